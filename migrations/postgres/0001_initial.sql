-- selfprov schema, version 1 (PostgreSQL). Mirrors ../sqlite/0001_initial.sql: keep both in step.
-- Integers are BIGINT throughout so both backends decode them as i64; times are UTC milliseconds
-- since the Unix epoch (the CLI prints them as RFC 3339).

CREATE TABLE users (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id          TEXT    NOT NULL UNIQUE,
    selfprov_id      TEXT    UNIQUE,
    first_name       TEXT    NOT NULL DEFAULT '',
    last_name        TEXT    NOT NULL DEFAULT '',
    extension        TEXT    NOT NULL UNIQUE,
    pin_hash         TEXT,
    selfprov_enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created_at       BIGINT  NOT NULL
);

CREATE TABLE devices (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mac          TEXT UNIQUE CHECK (mac IS NULL OR mac ~ '^[0-9A-F]{12}$'),
    device_name  TEXT,
    vendor       TEXT,
    model        TEXT,
    firmware     TEXT,
    user_agent   TEXT,
    sip_identity TEXT   NOT NULL,
    owner_id     BIGINT REFERENCES users (id) ON DELETE SET NULL,
    state        TEXT   NOT NULL DEFAULT 'autoprov'
                 CHECK (state IN ('autoprov', 'provisioning', 'provisioned', 'error')),
    created_at   BIGINT NOT NULL,
    last_seen    BIGINT NOT NULL
);

CREATE INDEX devices_device_name ON devices (device_name);
CREATE INDEX devices_sip_identity ON devices (sip_identity);
CREATE INDEX devices_owner_id ON devices (owner_id);

CREATE TABLE device_lines (
    device_id BIGINT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    position  BIGINT NOT NULL CHECK (position >= 1),
    number    TEXT   NOT NULL,
    UNIQUE (device_id, position)
);

CREATE TABLE audit_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time        BIGINT NOT NULL,
    device_id   BIGINT REFERENCES devices (id) ON DELETE SET NULL,
    device      TEXT   NOT NULL,
    user_id     TEXT,
    auth_method TEXT CHECK (auth_method IS NULL OR auth_method IN ('none', 'pin', 'admin-code')),
    outcome     TEXT   NOT NULL,
    detail      TEXT   NOT NULL DEFAULT ''
);

CREATE INDEX audit_events_time ON audit_events (time);
