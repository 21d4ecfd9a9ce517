-- An mx route may leave its port unset: the router then uses the MX port of its settings
-- (25 on the internet, a loopback server's in tests); a sandbox route always uses the simulator's.
ALTER TABLE routes ALTER COLUMN port DROP NOT NULL;
