//! Opening the SQL stores: connection settings of each backend, then migrations.

use std::path::Path;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

use super::Result;
use super::{Pools, SqlStore, migrations};
use crate::store::StoreFailure;

/// Reader connections of the SQLite store.
const SQLITE_READERS: u32 = 4;
/// Connections of the Postgres store.
const POSTGRES_CONNECTIONS: u32 = 8;
/// How long a statement waits for a locked SQLite database before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

impl SqlStore {
    /// Opens (creating if missing) the SQLite database at `path` and applies pending migrations.
    /// The parent directory must exist.
    pub async fn open_sqlite(path: &Path) -> Result<SqlStore> {
        let base = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .foreign_keys(false)
            // Temporary tables, sorts and any statement journal in memory rather than in files
            // under /var/tmp: they only ever hold one statement's worth (the batch statements
            // avoid the journal, `batch::sqlite`).
            .pragma("temp_store", "MEMORY");
        let writer = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            // 16 KiB pages (new databases only; an existing file keeps its size): a
            // batch's chunks are several KiB each, and bigger pages mean fewer WAL frames
            // and overflow pages per commit (measured ≈ 20 % more events/s than 4 KiB).
            // Chunks append at the end of their table, so a 16 MiB page cache is plenty
            // (64 MiB measured no faster). The writer checkpoints the WAL itself, in the
            // commit that takes it past 4000 pages (64 MiB): with the log fully copied back,
            // the next commit starts the WAL file over instead of growing it. (Background
            // checkpoints on a reader never finished while the writer appended, so the WAL grew
            // to the backstop, and every commit paid the file system for new pages: ≈ 15 %
            // fewer events/s.) The file is truncated back to 64 MiB after it resets.
            .page_size(16384)
            .pragma("cache_size", "-16384")
            .pragma("wal_autocheckpoint", "4000")
            .pragma("journal_size_limit", "67108864");
        let mut write = writer
            .connect()
            .await
            .map_err(|e| open_error("sqlite", &path.display(), e))?;
        migrations::sqlite()
            .run_direct(None, &mut write, false)
            .await
            .map_err(|e| StoreFailure(format!("sqlite migrations failed: {e}")))?;
        // Migrating a new database leaves ≈ 40 WAL frames (16 KiB each) behind; copy them into
        // the database file and start the WAL over, so a fresh store takes a third of the
        // space (a small volume fills later).
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut write)
            .await
            .map_err(|e| open_error("sqlite", &path.display(), e))?;
        let read = SqlitePoolOptions::new()
            .max_connections(SQLITE_READERS)
            // No ping per acquire: a reader is only ever used by queries of this store.
            .test_before_acquire(false)
            .connect_with(base.pragma("query_only", "ON"))
            .await
            .map_err(|e| open_error("sqlite", &path.display(), e))?;
        Ok(SqlStore {
            pools: Pools::Sqlite {
                corpus: Default::default(),
                write: tokio::sync::Mutex::new(Some(write)),
                writer_options: Box::new(writer),
                read,
            },
            held: Default::default(),
        })
    }

    /// Connects to PostgreSQL at `url` (`postgres://user@host:port/db`; `?options=-csearch_path%3Ds`
    /// selects a schema) and applies pending migrations.
    pub async fn open_postgres(url: &str) -> Result<SqlStore> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreFailure(format!("invalid DATABASE_URL: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(POSTGRES_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|e| open_error("postgres", &"DATABASE_URL", e))?;
        migrations::postgres()
            .run(&pool)
            .await
            .map_err(|e| StoreFailure(format!("postgres migrations failed: {e}")))?;
        Ok(SqlStore {
            pools: Pools::Postgres(pool),
            held: Default::default(),
        })
    }

    /// Closes the pools; SQLite checkpoints its WAL when the last connection closes.
    pub async fn close(&self) {
        match &self.pools {
            Pools::Sqlite { write, read, .. } => {
                read.close().await;
                if let Some(write) = write.lock().await.take() {
                    let _ = write.close().await;
                }
            }
            Pools::Postgres(pool) => pool.close().await,
        }
    }
}

fn open_error(backend: &str, target: &dyn std::fmt::Display, err: sqlx::Error) -> StoreFailure {
    StoreFailure(format!("cannot open {backend} store at {target}: {err}"))
}
