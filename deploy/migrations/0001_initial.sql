-- Sendarix initial schema. Each service owns the tables named in its comment.

-- Tenants and their API keys (ingest reads, the CLI writes).
CREATE TABLE tenants (
    id             uuid PRIMARY KEY,
    name           text NOT NULL,
    domains        text[] NOT NULL,
    webhook_url    text,
    webhook_secret text,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    key_hash   bytea PRIMARY KEY,            -- sha256 of the key; the key itself is never stored
    prefix     text NOT NULL,                -- first characters, to recognise a key in logs
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- Idempotency keys of POST /v1/messages and of send requests on the topic (ingest).
CREATE TABLE idempotency_keys (
    tenant_id    uuid NOT NULL,
    key          text NOT NULL,
    request_hash text NOT NULL,
    response     jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- The message log behind GET /v1/messages/{id} (ingest: the API and the recorder).
CREATE TABLE messages (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL,
    trace_id         text NOT NULL,
    status           text NOT NULL,
    lane             text,
    stream           text,
    category         text,
    sender           text,
    recipient        text,
    subject          text,
    template         text,
    template_version integer,
    route            jsonb,
    tags             text[] NOT NULL DEFAULT '{}',
    metadata         jsonb NOT NULL DEFAULT '{}',
    accepted_at      timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_tenant_accepted ON messages (tenant_id, accepted_at DESC);

CREATE TABLE message_events (
    event_id    uuid PRIMARY KEY,
    message_id  uuid NOT NULL,
    type        text NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    event       jsonb NOT NULL
);
CREATE INDEX message_events_message ON message_events (message_id, occurred_at);

-- Templates, versioned per locale (render).
CREATE TABLE templates (
    tenant_id  uuid NOT NULL,
    name       text NOT NULL,
    locale     text NOT NULL DEFAULT 'en',
    version    integer NOT NULL,
    subject    text NOT NULL,
    html       text,
    text       text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name, locale, version)
);

-- Addresses a tenant must not send to (policy-check).
CREATE TABLE suppressions (
    tenant_id  uuid NOT NULL,
    address    text NOT NULL,               -- lower-cased
    reason     text NOT NULL,               -- hard_bounce, complaint, unsubscribe, manual
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, address)
);

-- One row per delivery attempt handed to SMTP (sender): the guard against sending twice.
CREATE TABLE delivery_attempts (
    message_id  uuid NOT NULL,
    attempt     integer NOT NULL,
    state       text NOT NULL,              -- 'data' while DATA is in flight, then 'done'
    outcome     text,                       -- delivered, deferred, bounced, failed
    reply       jsonb,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (message_id, attempt)
);

-- Deferred attempts waiting for their backoff (retry-scheduler).
CREATE TABLE retry_schedule (
    message_id uuid NOT NULL,
    attempt    integer NOT NULL,            -- the attempt to make when due
    lane       text NOT NULL,
    topic      text NOT NULL,               -- where the attempt goes when due (deliver.<lane>)
    due_at     timestamptz NOT NULL,
    job        jsonb NOT NULL,
    headers    jsonb NOT NULL DEFAULT '{}',  -- trace context of the deferral
    PRIMARY KEY (message_id, attempt)
);
CREATE INDEX retry_schedule_due ON retry_schedule (due_at);

-- Webhook posts of delivery events (webhook).
CREATE TABLE webhook_deliveries (
    event_id     uuid NOT NULL,
    tenant_id    uuid NOT NULL,
    url          text NOT NULL,
    status       text NOT NULL,             -- delivered, failed
    attempts     integer NOT NULL,
    last_code    integer,
    last_error   text,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, url)
);
