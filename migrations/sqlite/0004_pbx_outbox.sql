-- selfprov schema, version 4 (SQLite): what the site's call control (the PBX) must learn of.
-- Mirrors ../postgres/0004_pbx_outbox.sql: keep both in step. Never edit once released.

-- The outbox: one row per change and per configured PBX connector, written in the same
-- transaction as the change. The delivery worker sends a connector's rows in id order and
-- deletes each once the PBX took it; a row that keeps failing for a reason of its own is
-- parked (parked_at set) with its last error, never dropped.
CREATE TABLE pbx_outbox (
    id              INTEGER PRIMARY KEY,
    connector       TEXT    NOT NULL,
    -- line.upserted, line.deleted, device.bound, device.unbound
    event           TEXT    NOT NULL,
    -- The event as JSON (what a webhook receives as "data").
    payload         TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- UTC ms before which the row is not tried again (back-off).
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    parked_at       INTEGER
);
CREATE INDEX pbx_outbox_next ON pbx_outbox (connector, parked_at, id);

-- What selfprov created at each PBX, per line: the only rows it ever changes or deletes there
-- (Kamailio: "username@domain" in subscriber; Asterisk: the PJSIP endpoint id).
CREATE TABLE pbx_objects (
    connector  TEXT    NOT NULL,
    line_id    INTEGER NOT NULL,
    object     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (connector, line_id)
);

-- Per connector: the last delivery that worked and the last error.
CREATE TABLE pbx_status (
    connector        TEXT    PRIMARY KEY,
    delivered        INTEGER NOT NULL DEFAULT 0,
    last_success_at  INTEGER,
    last_error       TEXT,
    last_error_at    INTEGER
);
