-- Routing and delivery control (issue 11): routes and IP pools as data, retry windows per lane,
-- operator controls over the queues, and each sender's view of its destination sites.

-- A tenant's routes: direct to MX, a relay (with TLS and AUTH), or the sandbox simulator.
-- Built-in routes (simulator, default-relay) have no rows.
CREATE TABLE routes (
    tenant_id       text NOT NULL,
    name            text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('mx', 'relay', 'sandbox')),
    host            text NOT NULL DEFAULT '',
    port            integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    tls             text NOT NULL DEFAULT 'none'
                    CHECK (tls IN ('none', 'opportunistic', 'starttls', 'implicit')),
    auth            text CHECK (auth IN ('plain', 'login')),
    username        text,
    preset          text,
    fallback        text,
    pool            text,
    is_default      boolean NOT NULL DEFAULT false,
    timeout_seconds double precision NOT NULL DEFAULT 30,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);
CREATE UNIQUE INDEX routes_one_default ON routes (tenant_id) WHERE is_default;

-- A relay route's AUTH password, encrypted; never read back through the API.
CREATE TABLE route_secrets (
    tenant_id  text NOT NULL,
    route      text NOT NULL,
    ciphertext bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, route),
    FOREIGN KEY (tenant_id, route) REFERENCES routes (tenant_id, name) ON DELETE CASCADE
);

-- A tenant's IP pools: source addresses with their EHLO names and weights.
CREATE TABLE ip_pools (
    tenant_id          text NOT NULL,
    name               text NOT NULL,
    addresses          jsonb NOT NULL DEFAULT '[]',
    return_path_domain text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);

-- How long a tenant's mail of one lane is worth retrying (defaults in schemas.pipeline).
CREATE TABLE retry_windows (
    tenant_id text NOT NULL,
    lane      text NOT NULL CHECK (lane IN ('critical', 'high', 'normal', 'bulk')),
    seconds   integer NOT NULL CHECK (seconds BETWEEN 60 AND 604800),
    PRIMARY KEY (tenant_id, lane)
);

-- Active operator controls: a pause holds the mail it matches, a drain sends a route's mail to
-- its fallback. A NULL field matches everything; deleting the row lifts the control.
CREATE TABLE queue_controls (
    id         uuid PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('pause', 'drain')),
    tenant_id  text,
    lane       text,
    route      text,
    site       text,
    reason     text NOT NULL DEFAULT '',
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- What happened to the queues: operator controls (with who) and site shaping changes.
CREATE TABLE queue_events (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    kind      text NOT NULL,
    actor     text NOT NULL,
    tenant_id text,
    scope     jsonb NOT NULL DEFAULT '{}',
    detail    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX queue_events_at ON queue_events (at);
CREATE INDEX queue_events_tenant ON queue_events (tenant_id, at);

-- Each sender's snapshot of the destination sites it delivers to, rewritten about once a second.
CREATE TABLE delivery_sites (
    sender_id       text NOT NULL,
    site            text NOT NULL,
    lane            text NOT NULL,
    state           text NOT NULL,
    in_flight       integer NOT NULL DEFAULT 0,
    limits          jsonb NOT NULL DEFAULT '{}',
    rate_per_minute double precision,
    last_replies    jsonb NOT NULL DEFAULT '[]',
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sender_id, site, lane)
);

-- What the queue view groups waiting attempts by, and why each waits.
ALTER TABLE retry_schedule
    ADD COLUMN tenant_id text,
    ADD COLUMN domain    text,
    ADD COLUMN site      text,
    ADD COLUMN route     text,
    ADD COLUMN reason    text NOT NULL DEFAULT 'deferred';
CREATE INDEX retry_schedule_tenant ON retry_schedule (tenant_id, due_at);
