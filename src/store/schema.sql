-- medic store schema, version 1. Plain SQL (TEXT timestamps in RFC 3339 UTC, INTEGER booleans) so a
-- PostgreSQL backend can follow with the same statements.

CREATE TABLE IF NOT EXISTS incidents (
    id              TEXT PRIMARY KEY,
    source          TEXT NOT NULL,
    monitor_id      TEXT NOT NULL,
    monitor_name    TEXT NOT NULL,
    service_name    TEXT NOT NULL,
    host            TEXT,
    monitor_url     TEXT,
    severity        TEXT NOT NULL,
    state           TEXT NOT NULL,
    last_status     TEXT NOT NULL,
    first_down_at   TEXT NOT NULL,
    opened_at       TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    closed_at       TEXT,
    down_count      INTEGER NOT NULL,
    attempt_count   INTEGER NOT NULL DEFAULT 0,
    error_logs      TEXT NOT NULL,
    outage_seconds  REAL,
    monitor_up_at   TEXT,
    parked_reason   TEXT,
    monitor_json    TEXT NOT NULL,
    details_json    TEXT NOT NULL,
    -- "source:monitor_id" while the incident is not terminal, NULL after: at most one open incident per monitor.
    open_key        TEXT UNIQUE
);
-- The runner's claim query: open, unparked incidents not waiting for a human, oldest first.
CREATE INDEX IF NOT EXISTS incidents_runnable ON incidents(opened_at)
    WHERE state NOT IN ('resolved', 'rejected', 'recovered_by_monitor', 'failed', 'awaiting_approval')
      AND parked_reason IS NULL;
-- Listing incidents newest first, whole or by state or service (the list never sorts or scans).
CREATE INDEX IF NOT EXISTS incidents_opened ON incidents(opened_at, id);
CREATE INDEX IF NOT EXISTS incidents_state_opened ON incidents(state, opened_at, id);
CREATE INDEX IF NOT EXISTS incidents_service_opened ON incidents(service_name, opened_at, id);
-- Retention: closed incidents by age.
CREATE INDEX IF NOT EXISTS incidents_closed ON incidents(closed_at) WHERE closed_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS timeline (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id  TEXT NOT NULL,
    at           TEXT NOT NULL,
    kind         TEXT NOT NULL,
    message      TEXT NOT NULL,
    data_json    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS timeline_incident ON timeline(incident_id, id);

-- Every accepted inbound alert, verbatim: what was acknowledged is here.
CREATE TABLE IF NOT EXISTS events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at  TEXT NOT NULL,
    source       TEXT NOT NULL,
    monitor_id   TEXT,
    status       TEXT NOT NULL,
    incident_id  TEXT,
    message      TEXT NOT NULL,
    body         TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS events_incident ON events(incident_id);
CREATE INDEX IF NOT EXISTS events_received ON events(received_at) WHERE incident_id IS NULL;

CREATE TABLE IF NOT EXISTS monitors (
    source       TEXT NOT NULL,
    monitor_id   TEXT NOT NULL,
    maintenance  INTEGER NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (source, monitor_id)
);

CREATE TABLE IF NOT EXISTS audit (
    seq          INTEGER PRIMARY KEY,
    time         TEXT NOT NULL,
    incident_id  TEXT,
    actor        TEXT NOT NULL,
    kind         TEXT NOT NULL,
    details      TEXT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL,
    -- HMAC of hash under <data_dir>/secrets/audit_key (NULL only on rows from before schema v2).
    mac          TEXT
);
CREATE INDEX IF NOT EXISTS audit_incident ON audit(incident_id);

-- The audit log is append-only: refuse changes at the database level too.
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END;

-- Generic key/value state that must survive restarts (dry-run toggle, digest schedule).
CREATE TABLE IF NOT EXISTS settings_state (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

-- Every command medic ran (or would have, in dry-run): the action policy's rate limits and circuit
-- breaker are computed from this history, so they survive restarts.
CREATE TABLE IF NOT EXISTS actions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           TEXT NOT NULL,
    incident_id  TEXT NOT NULL,
    host         TEXT NOT NULL,
    service      TEXT NOT NULL,
    action_key   TEXT NOT NULL,
    argv_json    TEXT NOT NULL,
    automatic    INTEGER NOT NULL,
    outcome      TEXT NOT NULL,
    exit_code    INTEGER,
    duration_ms  INTEGER
);
CREATE INDEX IF NOT EXISTS actions_host_at ON actions(host, at);
CREATE INDEX IF NOT EXISTS actions_at ON actions(at);

-- Every model call: tokens and cost, for cost_estimation and the per-day budget.
CREATE TABLE IF NOT EXISTS ledger (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           TEXT NOT NULL,
    incident_id  TEXT NOT NULL,
    level        TEXT NOT NULL,
    provider     TEXT NOT NULL,
    model        TEXT NOT NULL,
    tokens_in    INTEGER NOT NULL,
    tokens_out   INTEGER NOT NULL,
    cost         REAL NOT NULL,
    outcome      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_at ON ledger(at);

-- Approval links: only the token's hash is stored. One row per recipient; the first valid decision on any
-- of an incident's rows closes all of them.
CREATE TABLE IF NOT EXISTS approvals (
    token_hash    TEXT PRIMARY KEY,
    incident_id   TEXT NOT NULL,
    command_hash  TEXT NOT NULL,
    argv_json     TEXT NOT NULL,
    rollback      TEXT,
    recipient     TEXT NOT NULL,
    csrf          TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    decided_at    TEXT,
    decision      TEXT,
    reason        TEXT,
    -- 1 on the row whose link was used to decide.
    used          INTEGER NOT NULL DEFAULT 0,
    -- What this token does: 'approve' or 'reject' ('either' on links from before v2, never usable).
    action        TEXT NOT NULL DEFAULT 'either',
    -- One approval round (all recipients' links); the decision journal is keyed by it.
    request_id    TEXT,
    -- What the approval is bound to besides the argv.
    host          TEXT,
    service       TEXT,
    container     TEXT,
    verdict       TEXT,
    -- Who decided, from where.
    decided_ip    TEXT,
    decided_ua    TEXT
);
CREATE INDEX IF NOT EXISTS approvals_incident ON approvals(incident_id);

-- Durable outbox: emails and chat messages survive restarts and are sent later.
CREATE TABLE IF NOT EXISTS outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at       TEXT NOT NULL,
    channel          TEXT NOT NULL,
    destination      TEXT NOT NULL,
    subject          TEXT NOT NULL,
    -- Sealed under <data_dir>/secrets/outbox_key; emptied once the message was delivered.
    body             TEXT NOT NULL,
    incident_id      TEXT,
    event            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    sent_at          TEXT,
    last_error       TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(sent_at, next_attempt_at);

-- Console sessions: only the SHA-256 of the cookie's value is stored. A cookie from another medic
-- (another database) finds no row.
CREATE TABLE IF NOT EXISTS console_sessions (
    token_hash  TEXT PRIMARY KEY,
    operator    TEXT NOT NULL,
    csrf        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    last_seen   TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    ip          TEXT NOT NULL,
    user_agent  TEXT NOT NULL,
    revoked_at  TEXT,
    id          TEXT NOT NULL UNIQUE
);

-- The last `hosts check` per host, from the console or the CLI.
CREATE TABLE IF NOT EXISTS host_checks (
    host        TEXT PRIMARY KEY,
    checked_at  TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    report      TEXT NOT NULL
);
