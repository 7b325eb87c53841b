//! Leases in SQL (see [`crate::store::lease`]): claims, heartbeats, release, commands left for
//! an owner, and on Postgres the notices (`LISTEN/NOTIFY`) that wake other replicas.
//!
//! The claim is one `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING`: two
//! replicas claiming at once take disjoint jobs and never wait for each other. SQLite has one
//! writer, so the same statement without the lock clause is enough there.

use std::time::Duration;

use async_trait::async_trait;

use sqlx::SqliteConnection;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Result;
use super::rows::{ClaimRow, to_i64};
use super::{Pools, SqlStore, closed};
use crate::store::lease::Listener;
use crate::store::lease::{
    CLAIMABLE_CHANNEL, COMMANDS_CHANNEL, EVENTS_CHANNEL, STEER_COMMAND, command_notice,
    command_payload,
};
use crate::store::{Claim, Claimed, LeaseError, LeaseStore, Notice, Renewed};

macro_rules! claim_sql {
    ($lock:literal) => {
        concat!(
            "UPDATE jobs SET owner = $1, lease_until = $2 + $3, lease_epoch = lease_epoch + 1 \
             WHERE id IN (SELECT id FROM jobs WHERE status IN ('pending', 'running', 'paused') \
             AND (owner IS NULL OR lease_until < $2 OR $5 OR (owner = $1 AND $7)) \
             AND ($6 IS NULL OR id = $6) ORDER BY created_at, id LIMIT $4 + 0",
            $lock,
            ") RETURNING id, status, created_at, updated_at, spec, result, last_event_id, \
             lease_epoch, requested"
        )
    };
}

impl SqlStore {
    pub(super) async fn claim(&self, claim: &Claim<'_>) -> Result<Vec<Claimed>> {
        macro_rules! run {
            ($conn:expr, $sql:expr) => {
                sqlx::query_as::<_, ClaimRow>($sql)
                    .bind(claim.owner)
                    .bind(claim.now)
                    .bind(claim.lease_s)
                    .bind(to_i64(claim.limit))
                    .bind(claim.steal)
                    .bind(claim.job_id)
                    .bind(claim.reclaim_own)
                    .fetch_all($conn)
                    .await?
            };
        }
        let rows: Vec<ClaimRow> = match &self.pools {
            Pools::Sqlite { write, .. } => {
                let mut writer = write.lock().await;
                let conn = writer.as_mut().ok_or_else(closed)?;
                run!(&mut *conn, claim_sql!(""))
            }
            Pools::Postgres(pool) => run!(pool, claim_sql!(" FOR UPDATE SKIP LOCKED")),
        };
        rows.into_iter().map(Claimed::try_from).collect()
    }

    pub(super) async fn renew(&self, owner: &str, until: f64) -> Result<Vec<Renewed>> {
        const SQL: &str = concat!(
            "UPDATE jobs SET lease_until = $2 WHERE owner = $1 AND ",
            "status IN ('pending', 'running', 'paused')",
            " RETURNING id, lease_epoch, requested"
        );
        let rows: Vec<(String, i64, Option<String>)> =
            with_pool!(self, write, |pool| sqlx::query_as(SQL)
                .bind(owner)
                .bind(until)
                .fetch_all(pool)
                .await?);
        Ok(rows
            .into_iter()
            .map(|(job_id, epoch, requested)| Renewed {
                job_id,
                epoch: u64::try_from(epoch).unwrap_or(0),
                requested,
            })
            .collect())
    }

    pub(super) async fn release(&self, owner: &str) -> Result<()> {
        const SQL: &str = concat!(
            "UPDATE jobs SET owner = NULL, lease_until = NULL WHERE owner = $1 AND ",
            "status IN ('pending', 'running', 'paused')"
        );
        with_pool!(self, write, |pool| sqlx::query(SQL)
            .bind(owner)
            .execute(pool)
            .await?
            .rows_affected());
        self.notify(CLAIMABLE_CHANNEL, "").await
    }

    pub(super) async fn leave_request(&self, job_id: &str, command: &str) -> Result<bool> {
        const SQL: &str = concat!(
            "UPDATE jobs SET requested = $2 WHERE id = $1 AND ",
            "status IN ('pending', 'running', 'paused')"
        );
        let done = with_pool!(self, write, |pool| sqlx::query(SQL)
            .bind(job_id)
            .bind(command)
            .execute(pool)
            .await?
            .rows_affected());
        if done > 0 {
            self.notify(COMMANDS_CHANNEL, &command_payload(command, job_id))
                .await?;
        }
        Ok(done > 0)
    }

    pub(super) async fn forget_request(&self, job_id: &str, command: &str) -> Result<()> {
        with_pool!(self, write, |pool| sqlx::query(
            "UPDATE jobs SET requested = NULL WHERE id = $1 AND requested = $2"
        )
        .bind(job_id)
        .bind(command)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Queues a steering request for a live job's owner, flags the row (unless a command
    /// already waits there: acting on any command takes the steering too) and notifies the
    /// owner. False when the job is not live.
    pub(super) async fn leave_steering(&self, job_id: &str, request: &str) -> Result<bool> {
        const INSERT: &str = concat!(
            "INSERT INTO job_steering (job_id, request) SELECT id, $2 FROM jobs ",
            "WHERE id = $1 AND status IN ('pending', 'running', 'paused')"
        );
        const FLAG: &str = "UPDATE jobs SET requested = COALESCE(requested, $2) WHERE id = $1";
        let done = with_pool!(self, write, |pool| sqlx::query(INSERT)
            .bind(job_id)
            .bind(request)
            .execute(pool)
            .await?
            .rows_affected());
        if done == 0 {
            return Ok(false);
        }
        with_pool!(self, write, |pool| sqlx::query(FLAG)
            .bind(job_id)
            .bind(STEER_COMMAND)
            .execute(pool)
            .await?
            .rows_affected());
        self.notify(COMMANDS_CHANNEL, &command_payload(STEER_COMMAND, job_id))
            .await?;
        Ok(true)
    }

    /// Takes the steering requests waiting for a job, oldest first.
    pub(super) async fn take_steering(&self, job_id: &str) -> Result<Vec<String>> {
        const SQL: &str = "DELETE FROM job_steering WHERE job_id = $1 RETURNING seq, request";
        let mut rows: Vec<(i64, String)> = with_pool!(self, write, |pool| sqlx::query_as(SQL)
            .bind(job_id)
            .fetch_all(pool)
            .await?);
        rows.sort_by_key(|(seq, _)| *seq);
        Ok(rows.into_iter().map(|(_, request)| request).collect())
    }

    pub(super) async fn count_claimable(&self, now: f64) -> Result<u64> {
        const SQL: &str = concat!(
            "SELECT COUNT(*) FROM jobs WHERE status IN ('pending', 'running', 'paused') ",
            "AND (owner IS NULL OR lease_until < $1)"
        );
        let count: i64 = with_pool!(self, read, |pool| sqlx::query_scalar(SQL)
            .bind(now)
            .fetch_one(pool)
            .await?);
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// `NOTIFY channel, payload` on Postgres; nothing on SQLite (one process).
    pub(super) async fn notify(&self, channel: &str, payload: &str) -> Result<()> {
        if let Pools::Postgres(pool) = &self.pools {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(channel)
                .bind(payload)
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// The loop of the one listener connection of this replica (Postgres only).
    pub(super) fn listener(
        &self,
        tx: mpsc::Sender<Notice>,
        stop: CancellationToken,
    ) -> Option<Listener> {
        let Pools::Postgres(pool) = &self.pools else {
            return None;
        };
        let pool = pool.clone();
        Some(Box::pin(async move {
            let mut listener: Option<PgListener> = None;
            loop {
                let current = match listener.as_mut() {
                    Some(current) => current,
                    None => {
                        let connected = async {
                            let mut fresh = PgListener::connect_with(&pool).await?;
                            fresh
                                .listen_all([EVENTS_CHANNEL, COMMANDS_CHANNEL, CLAIMABLE_CHANNEL])
                                .await?;
                            Ok::<_, sqlx::Error>(fresh)
                        };
                        let connected = tokio::select! {
                            _ = stop.cancelled() => return,
                            connected = connected => connected,
                        };
                        match connected {
                            Ok(fresh) => {
                                // Anything sent while we were not listening is lost.
                                if tx.send(Notice::Lost).await.is_err() {
                                    return;
                                }
                                listener.insert(fresh)
                            }
                            Err(err) => {
                                tracing::warn!(error = %err, "cannot listen for notices; retrying");
                                tokio::select! {
                                    _ = stop.cancelled() => return,
                                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                                }
                                continue;
                            }
                        }
                    }
                };
                let received = tokio::select! {
                    _ = stop.cancelled() => return,
                    received = current.try_recv() => received,
                };
                let notice = match received {
                    Ok(Some(n)) => match n.channel() {
                        EVENTS_CHANNEL => Notice::Events(n.payload().to_string()),
                        COMMANDS_CHANNEL => match command_notice(n.payload()) {
                            Some(notice) => notice,
                            // Not a command this build writes: nothing to act on.
                            None => continue,
                        },
                        _ => Notice::Claimable,
                    },
                    // The connection was lost; the next call reconnects.
                    Ok(None) => Notice::Lost,
                    Err(err) => {
                        tracing::warn!(error = %err, "notice listener failed; reconnecting");
                        listener = None;
                        Notice::Lost
                    }
                };
                if tx.send(notice).await.is_err() {
                    return;
                }
            }
        }))
    }
}

#[async_trait]
impl LeaseStore for SqlStore {
    fn shared(&self) -> bool {
        matches!(self.pools, Pools::Postgres(_))
    }

    async fn claim_jobs(&self, claim: &Claim<'_>) -> Result<Vec<Claimed>, LeaseError> {
        Ok(self.claim(claim).await?)
    }

    async fn renew_leases(&self, owner: &str, until: f64) -> Result<Vec<Renewed>, LeaseError> {
        Ok(self.renew(owner, until).await?)
    }

    async fn release_leases(&self, owner: &str) -> Result<(), LeaseError> {
        Ok(self.release(owner).await?)
    }

    async fn request(&self, job_id: &str, command: &str) -> Result<bool, LeaseError> {
        Ok(self.leave_request(job_id, command).await?)
    }

    async fn clear_request(&self, job_id: &str, command: &str) -> Result<(), LeaseError> {
        Ok(self.forget_request(job_id, command).await?)
    }

    async fn leave_steering(&self, job_id: &str, request: &str) -> Result<bool, LeaseError> {
        Ok(SqlStore::leave_steering(self, job_id, request).await?)
    }

    async fn take_steering(&self, job_id: &str) -> Result<Vec<String>, LeaseError> {
        Ok(SqlStore::take_steering(self, job_id).await?)
    }

    async fn claimable_count(&self, now: f64) -> Result<u64, LeaseError> {
        Ok(self.count_claimable(now).await?)
    }

    async fn announce_claimable(&self) -> Result<(), LeaseError> {
        Ok(self.notify(CLAIMABLE_CHANNEL, "").await?)
    }

    fn listen(
        &self,
        tx: tokio::sync::mpsc::Sender<Notice>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Option<Listener> {
        self.listener(tx, stop)
    }
}
