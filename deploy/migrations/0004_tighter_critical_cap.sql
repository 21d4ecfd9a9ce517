-- A tighter default for the critical lane's per-tenant cap (ingest): measured with make bench's
-- fairness scenario, a burst of 200 from one tenant kept another tenant's OTPs waiting behind
-- it for seconds. Tenants created before keep their limits (sendarix tenant limits changes them).
ALTER TABLE tenants
    ALTER COLUMN critical_per_second SET DEFAULT 20,
    ALTER COLUMN critical_burst SET DEFAULT 40;
