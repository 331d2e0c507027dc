//! The schema migrations, embedded in the binary (it must work from any directory), one list
//! per backend, and the table recording which are applied. `migrations/sqlite/` and
//! `migrations/postgres/` must describe the same schema.

/// One forward migration.
pub(crate) struct Migration {
    pub version: i64,
    pub description: &'static str,
    pub sql: &'static str,
}

pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        description: "initial schema",
        sql: include_str!("../../migrations/sqlite/0001_initial.sql"),
    },
    Migration {
        version: 2,
        description: "templates, user profiles, lines, SIP endpoints, settings, API tokens",
        sql: include_str!("../../migrations/sqlite/0002_templates_profiles_lines.sql"),
    },
    Migration {
        version: 3,
        description: "autoregistration guest accounts, config URL keys, resync state",
        sql: include_str!("../../migrations/sqlite/0003_autoprov.sql"),
    },
    Migration {
        version: 4,
        description: "PBX outbox, objects selfprov owns at each PBX, delivery status",
        sql: include_str!("../../migrations/sqlite/0004_pbx_outbox.sql"),
    },
];

pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        description: "initial schema",
        sql: include_str!("../../migrations/postgres/0001_initial.sql"),
    },
    Migration {
        version: 2,
        description: "templates, user profiles, lines, SIP endpoints, settings, API tokens",
        sql: include_str!("../../migrations/postgres/0002_templates_profiles_lines.sql"),
    },
    Migration {
        version: 3,
        description: "autoregistration guest accounts, config URL keys, resync state",
        sql: include_str!("../../migrations/postgres/0003_autoprov.sql"),
    },
    Migration {
        version: 4,
        description: "PBX outbox, objects selfprov owns at each PBX, delivery status",
        sql: include_str!("../../migrations/postgres/0004_pbx_outbox.sql"),
    },
];

/// Valid in both dialects.
pub(crate) const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS selfprov_schema (\
    version BIGINT PRIMARY KEY, description TEXT NOT NULL, checksum TEXT NOT NULL, \
    applied_at BIGINT NOT NULL)";

/// FNV-1a 64 of the migration text, hex: detects a migration edited after it was applied (an
/// accident, not an attack, so a cryptographic hash is not needed).
pub(crate) fn checksum(sql: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sql.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_ascend_and_backends_match() {
        for list in [SQLITE, POSTGRES] {
            assert!(list.windows(2).all(|w| w[0].version < w[1].version));
        }
        let v = |l: &[Migration]| l.iter().map(|m| m.version).collect::<Vec<_>>();
        assert_eq!(v(SQLITE), v(POSTGRES));
    }

    #[test]
    fn checksum_is_stable_fnv1a() {
        assert_eq!(checksum(""), "cbf29ce484222325");
        assert_eq!(checksum("a"), "af63dc4c8601ec8c");
        assert_ne!(checksum(SQLITE[0].sql), checksum(POSTGRES[0].sql));
    }
}
