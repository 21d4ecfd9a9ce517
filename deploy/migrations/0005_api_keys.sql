-- API keys as data (ingest reads them, the admin API and the CLI write them through libs/keys.py).
-- A key has a public id (the secret itself is shown once and stored as its sha256), a name,
-- scopes, optional restrictions (NULL = any sending domain / any stream), an expiry (the old key
-- of a rotation keeps working until then), its last use (written at most once a minute per key
-- and process) and an optional rate limit of its own. Keys that existed before are their
-- tenant's first keys: they keep every scope.
ALTER TABLE api_keys
    ADD COLUMN id              uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    ADD COLUMN name            text NOT NULL DEFAULT 'default',
    ADD COLUMN scopes          text[] NOT NULL DEFAULT '{send,read,admin}',
    ADD COLUMN domains         text[],
    ADD COLUMN streams         text[],
    ADD COLUMN expires_at      timestamptz,
    ADD COLUMN last_used_at    timestamptz,
    ADD COLUMN rate_per_second real,
    ADD COLUMN rate_burst      integer;
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);

-- Each tenant's send rate (POST /v1/messages and /batch, in messages): a token bucket per ingest
-- process. The default (5,000/s, burst 10,000) is above the batch goal of make bench (2,000/s
-- through one tenant, saturation phases included), so only a runaway client meets it; lower it
-- per tenant with `sendarix tenant limits --rate/--burst`.
ALTER TABLE tenants
    ADD COLUMN rate_per_second real NOT NULL DEFAULT 5000,
    ADD COLUMN rate_burst      integer NOT NULL DEFAULT 10000;

-- Which key sent a message (NULL: it came through the topic, which has no key).
ALTER TABLE messages ADD COLUMN key_id uuid;
