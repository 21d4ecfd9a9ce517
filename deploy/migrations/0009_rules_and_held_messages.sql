-- Customer rules as data (libs/rules.py) and the messages a `hold` rule keeps (libs/held.py).

-- A tenant's rules, evaluated in (position, created_at, id) order by policy-check; the first
-- enabled rule whose `match` (an AND of the criteria it sets) fits a message decides.
CREATE TABLE rules (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    position     integer NOT NULL,
    enabled      boolean NOT NULL DEFAULT true,
    description  text NOT NULL DEFAULT '',
    match        jsonb NOT NULL DEFAULT '{}',
    action       text NOT NULL
                 CHECK (action IN ('allow', 'block', 'hold', 'force_lane', 'force_route',
                                   'force_pool')),
    lane         text,     -- force_lane
    route        text,     -- force_route
    pool         text,     -- force_pool
    hold_seconds integer,  -- hold
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rules_tenant_order ON rules (tenant_id, position, created_at, id);

-- Messages a rule holds: the record as policy-check would have forwarded it, waiting to be
-- released (published to route.<lane>), cancelled, or expired (failed, `hold_expired`).
-- A row leaves `held` in one statement, and is deleted once what its settlement publishes (the
-- record, or the `cancelled`/`failed` event) is confirmed by the broker; a settled row still
-- here is one whose publication a crash interrupted: the sweep publishes it again.
CREATE TABLE held_messages (
    message_id       uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL,
    rule_id          uuid NOT NULL,  -- no foreign key: a held message outlives its rule
    state            text NOT NULL DEFAULT 'held'
                     CHECK (state IN ('held', 'released', 'cancelled', 'expired')),
    lane             text NOT NULL,
    recipient        text NOT NULL,
    recipient_domain text NOT NULL,
    record           bytea NOT NULL,  -- the RenderedMessage's bytes, as read from policy.<lane>
    traceparent      text,            -- the message's trace, continued by its release
    held_at          timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    settled_at       timestamptz
);
CREATE INDEX held_messages_tenant ON held_messages (tenant_id, held_at, message_id)
    WHERE state = 'held';
CREATE INDEX held_messages_expiry ON held_messages (expires_at) WHERE state = 'held';
CREATE INDEX held_messages_settled ON held_messages (settled_at) WHERE state <> 'held';
