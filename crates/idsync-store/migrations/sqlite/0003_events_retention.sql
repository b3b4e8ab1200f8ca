-- idsync store, schema version 3: finished webhook events are purged after a retention period.
-- Keep migrations/postgres/0003_events_retention.sql in step.
--
-- The purge deletes done and dead events by finished_at, oldest first; only finished rows have one.
CREATE INDEX events_finished_idx ON events (finished_at) WHERE finished_at IS NOT NULL;
