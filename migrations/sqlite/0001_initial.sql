-- selfprov schema, version 1 (SQLite). Mirrors ../postgres/0001_initial.sql: keep both in step.
-- Times are UTC milliseconds since the Unix epoch (INTEGER), the one representation SQLite and
-- PostgreSQL decode the same way without a date-time crate; the CLI prints them as RFC 3339.

CREATE TABLE users (
    id               INTEGER PRIMARY KEY,
    user_id          TEXT    NOT NULL UNIQUE,
    -- Numeric ID a caller may type instead of the user ID.
    selfprov_id      TEXT    UNIQUE,
    first_name       TEXT    NOT NULL DEFAULT '',
    last_name        TEXT    NOT NULL DEFAULT '',
    -- Primary extension: line 1 of every phone bound to the user.
    extension        TEXT    NOT NULL UNIQUE,
    -- argon2id PHC string; NULL: the user has no PIN (secure modes then refuse the user's PIN).
    pin_hash         TEXT,
    selfprov_enabled INTEGER NOT NULL DEFAULT 1 CHECK (selfprov_enabled IN (0, 1)),
    created_at       INTEGER NOT NULL
);

CREATE TABLE devices (
    id           INTEGER PRIMARY KEY,
    -- 12 upper-case hex digits, no separators.
    mac          TEXT UNIQUE CHECK (mac IS NULL OR (length(mac) = 12 AND mac NOT GLOB '*[^0-9A-F]*')),
    device_name  TEXT,
    vendor       TEXT,
    model        TEXT,
    firmware     TEXT,
    user_agent   TEXT,
    -- From URI user@host as the phone presented it.
    sip_identity TEXT    NOT NULL,
    owner_id     INTEGER REFERENCES users (id) ON DELETE SET NULL,
    state        TEXT    NOT NULL DEFAULT 'autoprov'
                 CHECK (state IN ('autoprov', 'provisioning', 'provisioned', 'error')),
    created_at   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL
);

CREATE INDEX devices_device_name ON devices (device_name);
CREATE INDEX devices_sip_identity ON devices (sip_identity);
CREATE INDEX devices_owner_id ON devices (owner_id);

CREATE TABLE device_lines (
    device_id INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    position  INTEGER NOT NULL CHECK (position >= 1),
    number    TEXT    NOT NULL,
    UNIQUE (device_id, position)
);

-- Every binding attempt, failed ones too. Never the digits a caller typed.
CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY,
    time        INTEGER NOT NULL,
    device_id   INTEGER REFERENCES devices (id) ON DELETE SET NULL,
    -- How the phone identified itself (MAC, device name or SIP identity): kept even without a row.
    device      TEXT    NOT NULL,
    -- A user ID as text, not a foreign key: the trail outlives the user.
    user_id     TEXT,
    auth_method TEXT CHECK (auth_method IS NULL OR auth_method IN ('none', 'pin', 'admin-code')),
    outcome     TEXT    NOT NULL,
    detail      TEXT    NOT NULL DEFAULT ''
);

CREATE INDEX audit_events_time ON audit_events (time);
