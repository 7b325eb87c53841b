//! A fresh PostgreSQL schema per test, on the server `.ci/ensure-postgres.sh` provides
//! (`DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`): tests that share the
//! database never see each other's rows, and the schema is dropped when the test ends, failed
//! or not.

use sqlx::Connection;

/// A schema created for one test; [`PgSchema::url`] connects inside it only.
pub struct PgSchema {
    admin_url: String,
    name: String,
}

impl PgSchema {
    /// Creates `<prefix>_<uuid>`.
    pub async fn create(prefix: &str) -> PgSchema {
        let admin_url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        exec(&admin_url, format!("CREATE SCHEMA {name}")).await;
        PgSchema { admin_url, name }
    }

    /// A URL whose connections use only this schema (`search_path`).
    pub fn url(&self) -> String {
        let sep = if self.admin_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{sep}options=-csearch_path%3D{}",
            self.admin_url, self.name
        )
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let url = self.admin_url.clone();
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        // Drop may run inside the test's runtime or while unwinding: use a runtime of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(exec(&url, sql));
        })
        .join();
    }
}

/// Runs `sql` on its own connection.
pub async fn exec(url: &str, sql: String) {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap_or_else(|e| {
        panic!("postgres at {url} is not reachable ({e}); run .ci/ensure-postgres.sh")
    });
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}
