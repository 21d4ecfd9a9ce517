-- Sending domains as data (libs/sending_domains.py): each tenant's domains, the DKIM key the
-- sender signs with, and what the last DNS check found. From here on this table, not
-- tenants.domains (the domains a tenant was created with), says which domains a tenant has.
--
-- dkim_private_key is a PEM (PKCS#1) in clear: in production it must be encrypted at rest
-- (envelope encryption with a KMS key, decrypted by the sender when it loads its keyring).
-- The key columns are empty only between this SQL and the Python step of apply_migrations
-- that generates the missing keys right after it, in the same run.
CREATE TABLE sending_domains (
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    domain              text NOT NULL,  -- lower case, IDNA (punycode) form
    dkim_selector       text,
    dkim_private_key    text,
    dkim_public_key     text,           -- base64 DER SubjectPublicKeyInfo: the record's p=
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'verified', 'failed')),
    checks              jsonb NOT NULL DEFAULT '[]',  -- one result per DNS record
    created_in_dev_mode boolean NOT NULL DEFAULT false,
    checked_at          timestamptz,
    verified_at         timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, domain),
    CHECK ((dkim_selector IS NULL) = (dkim_private_key IS NULL)
           AND (dkim_private_key IS NULL) = (dkim_public_key IS NULL))
);

-- The periodic re-check (ingest) takes the domains checked longest ago first.
CREATE INDEX sending_domains_by_check ON sending_domains (checked_at NULLS FIRST);

-- The domains tenants were created with, before anything was verified: they were made by
-- `sendarix tenant create --domain`, which is dev mode's way, so they keep sending where dev
-- mode is on and must be verified everywhere else.
INSERT INTO sending_domains (tenant_id, domain, created_in_dev_mode, created_at)
SELECT DISTINCT t.id, lower(d), true, t.created_at
FROM tenants t, unnest(t.domains) AS d
ON CONFLICT DO NOTHING;
