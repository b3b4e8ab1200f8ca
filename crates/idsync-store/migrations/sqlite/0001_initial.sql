-- idsync store, schema version 1 (SQLite).
-- Keep migrations/postgres/0001_initial.sql in step: same tables, columns, constraints and indexes.
-- Never edit a released migration (sqlx checks their checksums); add a new numbered file instead.
--
-- Timestamps are INTEGER microseconds since the Unix epoch, UTC: they sort and compare correctly in SQL
-- (PostgreSQL uses TIMESTAMPTZ, which has the same microsecond precision).

-- One row per plan or sync run.
CREATE TABLE runs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    source          TEXT    NOT NULL,
    triggered_by    TEXT    NOT NULL,
    mode            TEXT    NOT NULL CHECK (mode IN ('plan', 'sync')),
    started_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    outcome         TEXT    NOT NULL DEFAULT 'running'
                    CHECK (outcome IN ('running', 'succeeded', 'failed', 'partially_applied', 'refused', 'no_changes')),
    planned         INTEGER NOT NULL DEFAULT 0 CHECK (planned >= 0),
    applied         INTEGER NOT NULL DEFAULT 0 CHECK (applied >= 0),
    failed          INTEGER NOT NULL DEFAULT 0 CHECK (failed >= 0),
    skipped         INTEGER NOT NULL DEFAULT 0 CHECK (skipped >= 0),
    users_read      INTEGER NOT NULL DEFAULT 0 CHECK (users_read >= 0),
    ldap_operations INTEGER NOT NULL DEFAULT 0 CHECK (ldap_operations >= 0),
    error           TEXT
) STRICT;

CREATE INDEX runs_source_idx ON runs (source, id);

-- One row per change idsync applied (or tried to). Deleting a run deletes its audit rows (retention).
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    recorded_at INTEGER NOT NULL,
    change_kind TEXT    NOT NULL,
    description TEXT    NOT NULL,
    login       TEXT,
    -- idsync_core::login_key(login): what the login filter compares.
    login_key   TEXT,
    -- JSON array of idsync_core::Reason.
    reasons     TEXT    NOT NULL DEFAULT '[]',
    result      TEXT    NOT NULL CHECK (result IN ('applied', 'already_in_state', 'failed')),
    error       TEXT
) STRICT;

CREATE INDEX audit_run_idx ON audit (run_id, id);
CREATE INDEX audit_login_idx ON audit (login_key, id);

-- The ownership ledger: what each source created in Grafana. `fact` is the canonical JSON of
-- idsync_core::OwnedFact (sorted keys); kind/login/org_id/team_id repeat its fields for queries and fast
-- loading. run_id is provenance only (no foreign key): ownership outlives the retention of run history.
CREATE TABLE ledger (
    source     TEXT    NOT NULL,
    fact       TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    login      TEXT,
    org_id     INTEGER,
    team_id    INTEGER,
    created_at INTEGER NOT NULL,
    run_id     INTEGER,
    PRIMARY KEY (source, fact),
    CHECK (
        (kind IN ('user', 'grafana_admin')
            AND login IS NOT NULL AND org_id IS NULL AND team_id IS NULL)
        OR (kind = 'org_membership'
            AND login IS NOT NULL AND org_id IS NOT NULL AND team_id IS NULL)
        OR (kind = 'team_membership'
            AND login IS NOT NULL AND org_id IS NOT NULL AND team_id IS NOT NULL)
        OR (kind = 'team'
            AND login IS NULL AND org_id IS NOT NULL AND team_id IS NOT NULL)
    )
) STRICT;

CREATE INDEX ledger_login_idx ON ledger (login);
CREATE INDEX ledger_org_idx ON ledger (org_id, team_id);

-- Reserved: the webhook event queue (issue B) arrives as migration 0002 in both folders
-- (events: id, source, payload, state, attempts, next_attempt_at, ...). Not created here.
