-- selfprov schema, version 3 (SQLite): the phone's side. Autoregistration (a guest SIP account
-- per autoprov device, numbered from the settings' autoreg range), the per-device key of the
-- provisioning server's URLs, and the resync bookkeeping. Mirrors ../postgres/0003_autoprov.sql:
-- keep both in step. Never edit once released.
-- (SQLite cannot ADD COLUMN ... UNIQUE: uniqueness is given by the indexes below; both
-- backends treat NULLs as distinct in a unique index.)

-- Random secret (32 lower-case hex digits): provisioned config files are served under
-- /<config_key>/<file>. Never returned by the API.
ALTER TABLE devices ADD COLUMN config_key TEXT;
-- The device's guest (autoprov) SIP account: a sip_endpoints row of its own, on no line.
ALTER TABLE devices ADD COLUMN guest_endpoint_id INTEGER REFERENCES sip_endpoints (id) ON DELETE SET NULL;
-- The number of that guest account, from the autoregistration range.
ALTER TABLE devices ADD COLUMN autoreg_number TEXT;
-- Last resync NOTIFY sent (UTC ms) and its outcome ("200", "timeout", "no-contact"...).
ALTER TABLE devices ADD COLUMN resync_at INTEGER;
ALTER TABLE devices ADD COLUMN resync_outcome TEXT;
-- Last config file fetch authorised for the device, and the last address it was seen at by an
-- authenticated request (REGISTER, keyed fetch): the source-IP check of bare-path fetches.
ALTER TABLE devices ADD COLUMN config_fetched_at INTEGER;
ALTER TABLE devices ADD COLUMN last_ip TEXT;

CREATE UNIQUE INDEX devices_config_key ON devices (config_key);
CREATE UNIQUE INDEX devices_guest_endpoint_id ON devices (guest_endpoint_id);
CREATE UNIQUE INDEX devices_autoreg_number ON devices (autoreg_number);
CREATE INDEX devices_state ON devices (state);
CREATE INDEX lines_number ON lines (number);

-- The resync NOTIFY a device template's phones get instead of their vendor's default
-- (`check-sync`, `check-sync;reboot=true|false`, `resync`, `service-control`,
-- `service-control;action=reset`); NULL: the vendor's default.
ALTER TABLE device_templates ADD COLUMN resync_event TEXT;
