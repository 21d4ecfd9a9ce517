-- How far a tenant may raise its own mail's priority, and how fast it may use the critical lane
-- (ingest: services/ingest/lanes.py).
ALTER TABLE tenants
    ADD COLUMN priority_ceiling text NOT NULL DEFAULT 'high',
    ADD COLUMN critical_per_second real NOT NULL DEFAULT 50,
    ADD COLUMN critical_burst integer NOT NULL DEFAULT 200;
