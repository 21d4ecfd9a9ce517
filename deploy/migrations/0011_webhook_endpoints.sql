-- Webhook endpoints as data (libs/webhook_endpoints.py), a durable delivery queue per endpoint
-- and the log of every post (libs/webhook_queue.py), and the notices a tenant was sent.

-- A tenant's endpoints. Empty filters match everything; a disabled endpoint is queued nothing.
-- During a rotation every post is signed with `secret` and with `previous_secret` until
-- `previous_expires_at`. `failing_since`/`failures`: the failures since the last success, from
-- which the dispatcher decides to disable an endpoint that stays down.
CREATE TABLE webhook_endpoints (
    id                  uuid PRIMARY KEY,
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url                 text NOT NULL,
    description         text NOT NULL DEFAULT '',
    event_types         text[] NOT NULL DEFAULT '{}',
    streams             text[] NOT NULL DEFAULT '{}',
    enabled             boolean NOT NULL DEFAULT true,
    disabled_reason     text,
    disabled_at         timestamptz,
    secret              text NOT NULL,
    previous_secret     text,
    previous_expires_at timestamptz,
    failing_since       timestamptz,
    failures            integer NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, created_at, id);

-- A change of what decides where events go tells the webhook services at once (they also forget
-- their copy within a few seconds without it). Not on `failures`: that changes with every post.
CREATE FUNCTION webhook_endpoints_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('webhook_endpoints', OLD.tenant_id::text);
    ELSE
        PERFORM pg_notify('webhook_endpoints', NEW.tenant_id::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER webhook_endpoints_changed
    AFTER INSERT OR DELETE OR UPDATE OF url, event_types, streams, enabled ON webhook_endpoints
    FOR EACH ROW EXECUTE FUNCTION webhook_endpoints_changed();

INSERT INTO webhook_endpoints (id, tenant_id, url, secret)
    SELECT gen_random_uuid(), id, webhook_url, webhook_secret FROM tenants
    WHERE webhook_url IS NOT NULL AND webhook_secret IS NOT NULL;
ALTER TABLE tenants DROP COLUMN webhook_url, DROP COLUMN webhook_secret;

-- What each endpoint is owed: one row per (endpoint, event). A row delivered stays (the record
-- that the event was posted), so a redelivered Kafka record is never posted twice. A worker
-- claims due rows by setting `locked_until` (FOR UPDATE SKIP LOCKED): another process skips them
-- until the lease ends, and a crashed worker's rows come back when it does.
CREATE TABLE webhook_queue (
    endpoint_id      uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id         uuid NOT NULL,
    tenant_id        uuid NOT NULL,
    event_type       text NOT NULL,
    body             bytea NOT NULL,   -- the CloudEvent as posted (and signed)
    traceparent      text,             -- the event's trace: each post is a span of it
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    queued_at        timestamptz NOT NULL DEFAULT now(),
    first_attempt_at timestamptz,
    due_at           timestamptz NOT NULL DEFAULT now(),
    locked_until     timestamptz,
    last_code        integer,
    last_error       text,
    settled_at       timestamptz,
    PRIMARY KEY (endpoint_id, event_id)
);
CREATE INDEX webhook_queue_due ON webhook_queue (endpoint_id, due_at) WHERE status = 'pending';
CREATE INDEX webhook_queue_settled ON webhook_queue (settled_at) WHERE status <> 'pending';

-- Every post made, newest first per endpoint (`GET /v1/webhooks/{id}/attempts`).
CREATE TABLE webhook_attempts (
    id           bigserial PRIMARY KEY,
    endpoint_id  uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id     uuid NOT NULL,
    event_type   text NOT NULL,
    attempted_at timestamptz NOT NULL,
    status_code  integer,
    latency_ms   integer NOT NULL,
    response     text,     -- the answer's first KiB
    error        text
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id DESC);

-- Notices (sendarix.notices) as the webhook service read them, for replays.
CREATE TABLE tenant_notices (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    type        text NOT NULL,
    occurred_at timestamptz NOT NULL,
    notice      jsonb NOT NULL
);
CREATE INDEX tenant_notices_tenant ON tenant_notices (tenant_id, occurred_at);

DROP TABLE webhook_deliveries;
