-- The version an experiment's variant is measured against: the active one when it started
-- (a later activation does not change what the report compares).
ALTER TABLE template_experiments ADD COLUMN control_version integer;
