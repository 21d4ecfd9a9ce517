-- A deleted tenant's held messages (their records hold personal data) go with it, as its rules do.
DELETE FROM held_messages h WHERE NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = h.tenant_id);
ALTER TABLE held_messages
    ADD CONSTRAINT held_messages_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE;
