-- Suppressions per stream, with their source, expiry and the removals' audit trail.
--
-- A suppression is (tenant, address, stream, reason): a hard bounce suppresses in its stream,
-- an unsubscribe in its stream, a complaint in every stream (critical account mail still goes:
-- the decision, in policy-check, reads the reason), repeated soft bounces for a while
-- (expires_at). One row per reason, so no reason hides another (an unsubscribe outlives a
-- pause for soft bounces; a manual entry cannot overwrite a complaint, whose removal needs
-- the admin scope). Expired rows suppress nothing; removed rows leave this table for
-- suppression_removals.
--
-- changed_xid is the transaction that last wrote a row (or removed one): policy-check's
-- in-memory view polls the rows of transactions its previous poll's snapshot did not see, which no commit can slip past,
-- however long the transaction that wrote it ran (a sequence or a timestamp can: a value is
-- taken before the commit that makes it visible).

ALTER TABLE suppressions RENAME TO suppressions_0007;
ALTER INDEX suppressions_pkey RENAME TO suppressions_0007_pkey;

CREATE TABLE suppressions (
    tenant_id         uuid NOT NULL,
    address           text COLLATE "C" NOT NULL,      -- lower-cased addr-spec
    stream            text NOT NULL CHECK (stream IN ('transactional', 'broadcast')),
    reason            text NOT NULL,  -- hard_bounce, complaint, unsubscribe, manual, repeated_soft_bounce
    source_message_id text,                           -- the message whose event taught it
    note              text,                           -- who/why, for manual ones
    created_by        text,                           -- the API key id, 'cli' or a service
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz,                    -- NULL: for good
    changed_xid       xid8 NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (tenant_id, address, stream, reason)
);
CREATE INDEX suppressions_changed ON suppressions (changed_xid);

-- Today's rows keep their meaning: an unsubscribe withdrew consent to broadcast mail only;
-- a hard bounce, a complaint or a manual block stopped every stream.
INSERT INTO suppressions (tenant_id, address, stream, reason, created_at, created_by)
SELECT o.tenant_id, o.address, s.stream, o.reason, o.created_at, 'migration 0008'
FROM suppressions_0007 o
CROSS JOIN LATERAL unnest(
    CASE WHEN o.reason = 'unsubscribe' THEN ARRAY['broadcast']
         ELSE ARRAY['transactional', 'broadcast'] END
) AS s (stream);

DROP TABLE suppressions_0007;

-- Soft bounces whose cause is the recipient's mailbox, one per message, counted over a window.
CREATE TABLE soft_bounces (
    tenant_id  uuid NOT NULL,
    address    text COLLATE "C" NOT NULL,
    stream     text NOT NULL,
    message_id text NOT NULL,
    bounced_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, address, stream, message_id)
);
CREATE INDEX soft_bounces_bounced_at ON soft_bounces (bounced_at);

-- What was removed, by whom and why.
CREATE TABLE suppression_removals (
    tenant_id  uuid NOT NULL,
    address    text NOT NULL,
    stream     text NOT NULL,
    reason     text NOT NULL,
    created_at timestamptz NOT NULL,
    removed_at timestamptz NOT NULL DEFAULT now(),
    removed_by text,
    note       text,
    changed_xid xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX suppression_removals_tenant ON suppression_removals (tenant_id, removed_at);
CREATE INDEX suppression_removals_changed ON suppression_removals (changed_xid);
