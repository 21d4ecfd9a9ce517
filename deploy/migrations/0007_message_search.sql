-- Finding messages, the raw .eml, cancelling before SMTP, and the message log's retention.

-- Search (GET /v1/messages): always one tenant's messages, newest first, paged by keyset on
-- (accepted_at, id). Each index below answers one filter in that order, so a page is an index
-- range scan that stops after `limit` rows, however many messages the tenant has.
DROP INDEX messages_tenant_accepted;
CREATE INDEX messages_tenant_accepted_id ON messages (tenant_id, accepted_at DESC, id DESC);
CREATE INDEX messages_tenant_recipient
    ON messages (tenant_id, lower(recipient), accepted_at DESC, id DESC);
CREATE INDEX messages_tenant_status ON messages (tenant_id, status, accepted_at DESC, id DESC);
-- A category or template the tenant rarely (or never) used would otherwise walk all its messages.
CREATE INDEX messages_tenant_category
    ON messages (tenant_id, category, accepted_at DESC, id DESC);
CREATE INDEX messages_tenant_template
    ON messages (tenant_id, template, accepted_at DESC, id DESC) WHERE template IS NOT NULL;
-- Broadcast mail is the minority stream of a transactional platform: its own small index.
CREATE INDEX messages_tenant_broadcast
    ON messages (tenant_id, accepted_at DESC, id DESC) WHERE stream = 'broadcast';
-- Tags: each one qualified by its tenant ("<tenant id>/<tag>"), so that the statistics of this
-- index say how common a tag is for each tenant. On plain tags, PostgreSQL could not tell a tag
-- this tenant never used from one every tenant uses, and walked the tenant's whole range looking
-- for it (300 ms on 500,000 messages); now a rare tag is a bitmap of its few messages and a
-- common one a short walk in page order.
CREATE FUNCTION tenant_tags(tenant uuid, tags text[]) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT ARRAY(SELECT tenant::text || '/' || tag FROM unnest(tags) AS tag) $$;
CREATE INDEX messages_tenant_tags ON messages USING gin (tenant_tags(tenant_id, tags));
-- Metadata: containment (@>) of key/value pairs, across tenants (pairs are mostly ids, rare).
CREATE INDEX messages_metadata ON messages USING gin (metadata jsonb_path_ops);

-- The exact bytes of a message's last attempt handed to SMTP (GET /v1/messages/{id}/raw),
-- zlib-compressed; written by the sender in the statement that claims the attempt.
CREATE TABLE message_raw (
    message_id uuid PRIMARY KEY,
    tenant_id  uuid NOT NULL,
    attempt    integer NOT NULL,
    content    bytea NOT NULL,               -- zlib
    stored_at  timestamptz NOT NULL DEFAULT now()
);

-- Cancel (DELETE /v1/messages/{id}): a row in state 'cancelled' (attempt 0, before any real
-- attempt) and an attempt in DATA exclude each other, so a cancel and the sender's claim can
-- never both win: the one that comes second finds the other's row.
CREATE UNIQUE INDEX delivery_attempts_cancel_or_data
    ON delivery_attempts (message_id) WHERE state IN ('data', 'cancelled');

-- Retention: each tenant's messages, their events and raw bytes are deleted this many days
-- after acceptance.
ALTER TABLE tenants ADD COLUMN retention_days integer NOT NULL DEFAULT 30
    CHECK (retention_days > 0);
