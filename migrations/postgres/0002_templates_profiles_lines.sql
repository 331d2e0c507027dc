-- selfprov schema, version 2 (PostgreSQL): universal device and line templates, user profiles, lines
-- with their SIP endpoints, self-provisioning settings and API tokens. Mirrors
-- ../sqlite/0002_templates_profiles_lines.sql: keep both in step. Never edit once released.
-- Integers are BIGINT so both backends decode them as i64. JSON lists are TEXT (validated by the store).

CREATE TABLE device_templates (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                TEXT    NOT NULL UNIQUE,
    -- Pattern with #Tag#s, expanded when a phone is provisioned (validated when saved).
    description_pattern TEXT    NOT NULL DEFAULT '#FirstName# #LastName# (#Product# #Protocol#)',
    device_pool         TEXT    NOT NULL DEFAULT 'default',
    -- Security profile: signalling transport, digest authentication, TLS (signalling + SRTP).
    security_transport  TEXT    NOT NULL DEFAULT 'udp' CHECK (security_transport IN ('udp', 'tcp', 'tls')),
    security_digest     BOOLEAN NOT NULL DEFAULT TRUE,
    security_tls        BOOLEAN NOT NULL DEFAULT FALSE,
    line_keys           BIGINT NOT NULL DEFAULT 1 CHECK (line_keys BETWEEN 1 AND 8),
    -- JSON list of {"position", "number", "label"}.
    speed_dials         TEXT    NOT NULL DEFAULT '[]',
    locale              TEXT    NOT NULL DEFAULT 'en-US',
    timezone            TEXT    NOT NULL DEFAULT 'UTC',
    ntp_server          TEXT,
    registrar_address   TEXT,
    registrar_port      BIGINT NOT NULL DEFAULT 5060 CHECK (registrar_port BETWEEN 1 AND 65535),
    proxy_address       TEXT,
    proxy_port          BIGINT NOT NULL DEFAULT 5060 CHECK (proxy_port BETWEEN 1 AND 65535)
);

CREATE TABLE line_templates (
    id                        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                      TEXT    NOT NULL UNIQUE,
    caller_id_name_pattern    TEXT    NOT NULL DEFAULT '#FirstName# #LastName#',
    label_pattern             TEXT    NOT NULL DEFAULT '#Extension# - #FirstName#',
    context                   TEXT    NOT NULL DEFAULT 'default',
    -- True: the line gets a voicemail box numbered as the line.
    voicemail_enabled         BOOLEAN NOT NULL DEFAULT FALSE,
    cfwd_all_destination      TEXT,
    cfwd_all_enabled          BOOLEAN NOT NULL DEFAULT FALSE,
    cfwd_busy_destination     TEXT,
    cfwd_busy_enabled         BOOLEAN NOT NULL DEFAULT FALSE,
    cfwd_noanswer_destination TEXT,
    cfwd_noanswer_enabled     BOOLEAN NOT NULL DEFAULT FALSE,
    max_calls                 BIGINT NOT NULL DEFAULT 4 CHECK (max_calls BETWEEN 1 AND 64),
    busy_trigger              BIGINT NOT NULL DEFAULT 2 CHECK (busy_trigger BETWEEN 1 AND max_calls)
);

CREATE TABLE user_profiles (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name               TEXT    NOT NULL UNIQUE,
    description        TEXT    NOT NULL DEFAULT '',
    -- RESTRICT: a template in use cannot be deleted.
    device_template_id BIGINT NOT NULL REFERENCES device_templates (id) ON DELETE RESTRICT,
    line_template_id   BIGINT NOT NULL REFERENCES line_templates (id) ON DELETE RESTRICT,
    -- Cisco's default is false: self-provisioning is opted into per profile.
    allow_provision    BOOLEAN NOT NULL DEFAULT FALSE,
    max_devices        BIGINT NOT NULL DEFAULT 10 CHECK (max_devices BETWEEN 0 AND 1000)
);

-- A user without a profile uses the settings' default profile.
ALTER TABLE users ADD COLUMN profile_id BIGINT REFERENCES user_profiles (id) ON DELETE SET NULL;
-- argon2id PHC string, for the future web login.
ALTER TABLE users ADD COLUMN password_hash TEXT;
CREATE INDEX users_profile_id ON users (profile_id);

CREATE TABLE lines (
    id                        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number                    TEXT    NOT NULL,
    context                   TEXT    NOT NULL DEFAULT 'default',
    caller_id_name            TEXT    NOT NULL DEFAULT '',
    label                     TEXT    NOT NULL DEFAULT '',
    voicemail                 TEXT,
    cfwd_all_destination      TEXT,
    cfwd_all_enabled          BOOLEAN NOT NULL DEFAULT FALSE,
    cfwd_busy_destination     TEXT,
    cfwd_busy_enabled         BOOLEAN NOT NULL DEFAULT FALSE,
    cfwd_noanswer_destination TEXT,
    cfwd_noanswer_enabled     BOOLEAN NOT NULL DEFAULT FALSE,
    max_calls                 BIGINT NOT NULL DEFAULT 4 CHECK (max_calls BETWEEN 1 AND 64),
    busy_trigger              BIGINT NOT NULL DEFAULT 2 CHECK (busy_trigger BETWEEN 1 AND max_calls),
    created_at                BIGINT NOT NULL,
    UNIQUE (number, context)
);

CREATE TABLE user_lines (
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    line_id BIGINT NOT NULL REFERENCES lines (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, line_id)
);
CREATE INDEX user_lines_line_id ON user_lines (line_id);

CREATE TABLE sip_endpoints (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    auth_username   TEXT    NOT NULL UNIQUE,
    -- Digest secret the phone registers with. The provisioning server must hand it to the phone,
    -- so it is stored as is (not hashed); it is never logged nor returned in lists.
    password        TEXT    NOT NULL,
    transport       TEXT    NOT NULL DEFAULT 'udp' CHECK (transport IN ('udp', 'tcp', 'tls')),
    digest_required BOOLEAN NOT NULL DEFAULT TRUE,
    created_at      BIGINT NOT NULL
);

-- One endpoint per line and one line per endpoint.
CREATE TABLE line_endpoints (
    line_id         BIGINT NOT NULL UNIQUE REFERENCES lines (id) ON DELETE CASCADE,
    sip_endpoint_id BIGINT NOT NULL UNIQUE REFERENCES sip_endpoints (id) ON DELETE RESTRICT
);

ALTER TABLE device_lines ADD COLUMN line_id BIGINT REFERENCES lines (id) ON DELETE CASCADE;
CREATE UNIQUE INDEX device_lines_device_line ON device_lines (device_id, line_id);
CREATE INDEX device_lines_line_id ON device_lines (line_id);

ALTER TABLE devices ADD COLUMN protocol TEXT NOT NULL DEFAULT 'sip' CHECK (protocol IN ('sip', 'sccp'));
-- basic: one line; advanced: up to eight (Cisco's third-party SIP device types).
ALTER TABLE devices ADD COLUMN device_type TEXT NOT NULL DEFAULT 'advanced'
    CHECK (device_type IN ('basic', 'advanced'));
ALTER TABLE devices ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN template_id BIGINT REFERENCES device_templates (id) ON DELETE SET NULL;

CREATE TABLE selfprov_settings (
    id                         BIGINT PRIMARY KEY CHECK (id = 1),
    auth_mode                  TEXT    NOT NULL DEFAULT 'secure-users'
                               CHECK (auth_mode IN ('non-secure', 'secure-users', 'secure-users-and-admins')),
    -- argon2id PHC string of the administrator's authentication code; NULL: none.
    admin_code_hash            TEXT,
    -- JSON lists of digit strings / language tags (priority order, at most 9).
    ivr_extensions             TEXT    NOT NULL DEFAULT '["8000"]',
    languages                  TEXT    NOT NULL DEFAULT '["en-US"]',
    default_profile_id         BIGINT REFERENCES user_profiles (id) ON DELETE RESTRICT,
    autoreg_start_dn           TEXT,
    autoreg_end_dn             TEXT,
    autoreg_device_template_id BIGINT REFERENCES device_templates (id) ON DELETE RESTRICT,
    autoreg_line_template_id   BIGINT REFERENCES line_templates (id) ON DELETE RESTRICT,
    allow_admin_takeover       BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE api_tokens (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT    NOT NULL,
    -- SHA-256 of the token, hex. The token itself is shown once, when created.
    token_hash TEXT    NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_used  BIGINT
);

CREATE INDEX audit_events_device ON audit_events (device);
CREATE INDEX audit_events_user_id ON audit_events (user_id);

-- Defaults so that a fresh install provisions phones.
INSERT INTO device_templates (name, speed_dials)
    VALUES ('default', '[{"position":1,"number":"8000","label":"IVR"}]');
INSERT INTO line_templates (name) VALUES ('default');
INSERT INTO user_profiles (name, description, device_template_id, line_template_id, allow_provision)
    SELECT 'default', 'Default profile: self-provisioning allowed', d.id, l.id, TRUE
    FROM device_templates d, line_templates l WHERE d.name = 'default' AND l.name = 'default';
INSERT INTO selfprov_settings (id, default_profile_id, autoreg_device_template_id, autoreg_line_template_id)
    SELECT 1, p.id, p.device_template_id, p.line_template_id FROM user_profiles p WHERE p.name = 'default';
