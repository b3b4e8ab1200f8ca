-- idsync store, schema version 2 (SQLite): the durable webhook event queue.
-- Keep migrations/postgres/0002_events.sql in step: same tables, columns, constraints and indexes.
--
-- One row per login event the webhook accepted. The daemon answers 202 only once the row is committed;
-- workers claim queued rows (state queued -> running, with a lease), then complete, retry or dead-letter
-- them. A running row whose lease expired (its worker died) is put back to queued.
CREATE TABLE events (
    -- The sender's event id (or one idsync generated): deliveries with the same id are one event.
    id              TEXT    NOT NULL PRIMARY KEY,
    source          TEXT    NOT NULL,
    login           TEXT    NOT NULL,
    -- idsync_core::login_key(login): at most one event per (source, login_key) is running at a time.
    login_key       TEXT    NOT NULL,
    -- The normalised event as JSON, without credentials.
    payload         TEXT    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'dead')),
    -- Claims so far (a claim counts as an attempt even if its worker dies).
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    received_at     INTEGER NOT NULL,
    -- Not claimed before this instant (received_at at first, later the retry's back-off).
    next_attempt_at INTEGER NOT NULL,
    -- Set while running: the claim is the worker's until then.
    lease_until     INTEGER,
    finished_at     INTEGER,
    last_error      TEXT,
    -- The run that applied the event (provenance only, like ledger.run_id: no foreign key).
    run_id          INTEGER,
    CHECK ((state = 'running') = (lease_until IS NOT NULL)),
    CHECK ((state IN ('done', 'dead')) = (finished_at IS NOT NULL))
) STRICT;

-- The claim: queued rows that are due, oldest first (and the running rows whose lease expired).
CREATE INDEX events_claim_idx ON events (state, next_attempt_at, id);
-- Per-user exclusivity: is this user's event already running?
CREATE INDEX events_user_idx ON events (source, login_key, state);
