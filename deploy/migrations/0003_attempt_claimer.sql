-- Which sender process claimed an attempt (sender): a claim whose write seemed to fail (the
-- database restarted under it) is released by the process that made it, which knows it never
-- handed the message to SMTP; any other claim in state 'data' stays an unknown outcome.
ALTER TABLE delivery_attempts ADD COLUMN claimed_by text;
