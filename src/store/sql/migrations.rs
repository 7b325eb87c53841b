//! The schema, versioned with `sqlx migrate`: `migrations/sqlite/` and `migrations/postgres/` hold
//! the same tables in each backend's types. The files are embedded at build time and applied at
//! open; the history lives in `_sqlx_migrations`, compatible with `sqlx migrate info/run`.
//!
//! To add a migration: add `NNNN_name.sql` to BOTH directories and one line to each list below
//! (a unit test fails if a file is not listed).

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// (version, description, SQL) of one migration.
type Embedded = (i64, &'static str, &'static str);

const SQLITE: &[Embedded] = &[(
    1,
    "init",
    include_str!("../../../migrations/sqlite/0001_init.sql"),
)];

const POSTGRES: &[Embedded] = &[(
    1,
    "init",
    include_str!("../../../migrations/postgres/0001_init.sql"),
)];

fn migrator(embedded: &[Embedded]) -> Migrator {
    Migrator::with_migrations(
        embedded
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

pub(super) fn sqlite() -> Migrator {
    migrator(SQLITE)
}

pub(super) fn postgres() -> Migrator {
    migrator(POSTGRES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed_files(dir: &str) -> Vec<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dir);
        let mut names: Vec<String> = std::fs::read_dir(path)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        names.sort();
        names
    }

    fn expected_names(embedded: &[Embedded]) -> Vec<String> {
        embedded
            .iter()
            .map(|(version, description, _)| format!("{version:04}_{description}.sql"))
            .collect()
    }

    #[test]
    fn every_migration_file_is_embedded_for_both_backends() {
        assert_eq!(listed_files("sqlite"), expected_names(SQLITE));
        assert_eq!(listed_files("postgres"), expected_names(POSTGRES));
    }
}
