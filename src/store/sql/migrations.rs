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

const SQLITE: &[Embedded] = &[
    (
        1,
        "init",
        include_str!("../../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "event_chunks",
        include_str!("../../../migrations/sqlite/0002_event_chunks.sql"),
    ),
    (
        3,
        "durable_runs",
        include_str!("../../../migrations/sqlite/0003_durable_runs.sql"),
    ),
    (
        4,
        "leases",
        include_str!("../../../migrations/sqlite/0004_leases.sql"),
    ),
    (
        5,
        "steering",
        include_str!("../../../migrations/sqlite/0005_steering.sql"),
    ),
];

const POSTGRES: &[Embedded] = &[
    (
        1,
        "init",
        include_str!("../../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "event_chunks",
        include_str!("../../../migrations/postgres/0002_event_chunks.sql"),
    ),
    (
        3,
        "durable_runs",
        include_str!("../../../migrations/postgres/0003_durable_runs.sql"),
    ),
    (
        4,
        "leases",
        include_str!("../../../migrations/postgres/0004_leases.sql"),
    ),
    (
        5,
        "steering",
        include_str!("../../../migrations/postgres/0005_steering.sql"),
    ),
];

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

    use std::sync::Arc;

    use sqlx::Executor as _;

    use crate::domain::{Event, EventPayload, JobSpec, ObjectiveScores};
    use crate::store::{JobStore, SqlStore};

    /// Events as version 1 stored them (one row each; the second in SQLite's staging table).
    fn old_events() -> Vec<Event> {
        let progress = EventPayload::Progress {
            iteration: 1,
            proposal: "say \"hi\"\n".into(),
            target_model: "m".into(),
            rubric: None,
            scores: ObjectiveScores {
                brevity: Some(3),
                diversity: Some(0.25),
                coverage: None,
                judge: Default::default(),
            },
        };
        vec![
            Event {
                id: 1,
                job_id: "old".into(),
                ts: 1_795_626_351.651_278_4,
                payload: EventPayload::Started {},
            },
            Event {
                id: 2,
                job_id: "old".into(),
                ts: 1_795_626_351.700_001,
                payload: progress,
            },
        ]
    }

    /// Fills a version-1 schema in `$pool` with one job and [`old_events`] (the second in
    /// `event_staging`). A macro: the same statements against either backend's pool.
    macro_rules! fill_version_1 {
        ($pool:expr) => {{
            let spec = serde_json::to_string(&JobSpec::from_prompt("p")).unwrap();
            sqlx::query(
                "INSERT INTO jobs (id, status, created_at, updated_at, spec, last_event_id) \
                 VALUES ('old', 'running', 1, 1, $1, 2)",
            )
            .bind(spec)
            .execute($pool)
            .await
            .unwrap();
            for (event, table) in old_events().iter().zip(["events", "event_staging"]) {
                let sql = format!(
                    "INSERT INTO {table} (job_id, id, ts, type, data) VALUES ($1, $2, $3, $4, $5)"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(event.job_id.as_str())
                    .bind(event.id as i64)
                    .bind(event.ts)
                    .bind(event.payload.type_name())
                    .bind(event.payload.data_json_text())
                    .execute($pool)
                    .await
                    .unwrap();
            }
        }};
    }

    async fn assert_migrated(store: Arc<dyn JobStore>) {
        assert_eq!(
            store.events_after("old", 0, 10).await.unwrap(),
            old_events()
        );
        assert_eq!(
            store.events_after("old", 1, 10).await.unwrap(),
            old_events()[1..]
        );
        assert_eq!(
            store.get_job("old").await.unwrap().unwrap().last_event_id,
            2
        );
    }

    #[tokio::test]
    async fn sqlite_version_1_events_are_kept_exactly_as_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        let pool = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true),
        )
        .await
        .unwrap();
        migrator(&SQLITE[..1]).run(&pool).await.unwrap();
        fill_version_1!(&pool);
        pool.close().await;

        let store = SqlStore::open_sqlite(&path).await.unwrap();
        assert_migrated(Arc::new(store)).await;
    }

    #[tokio::test]
    async fn postgres_version_1_events_are_kept_exactly_as_chunks() {
        let admin = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
        let schema = format!("m_{}", uuid::Uuid::new_v4().simple());
        let admin_pool = sqlx::PgPool::connect(&admin)
            .await
            .expect("postgres is reachable (.ci/ensure-postgres.sh)");
        admin_pool
            .execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .await
            .unwrap();
        let sep = if admin.contains('?') { '&' } else { '?' };
        let url = format!("{admin}{sep}options=-csearch_path%3D{schema}");
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        migrator(&POSTGRES[..1]).run(&pool).await.unwrap();
        // Postgres never staged, but its v1 schema has the table: rows there move too.
        fill_version_1!(&pool);
        pool.close().await;

        let store = SqlStore::open_postgres(&url).await.unwrap();
        assert_migrated(Arc::new(store)).await;
        admin_pool
            .execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .await
            .unwrap();
    }

    #[test]
    fn every_migration_file_is_embedded_for_both_backends() {
        assert_eq!(listed_files("sqlite"), expected_names(SQLITE));
        assert_eq!(listed_files("postgres"), expected_names(POSTGRES));
    }
}
