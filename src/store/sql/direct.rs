//! The SQLite group commit, run straight on the writer connection's handle.
//!
//! sqlx runs every SQLite statement on its connection's worker thread: each statement, and the
//! `BEGIN` and `COMMIT` around them, is a hand-off to that thread and back, and every bound
//! argument is first copied into sqlx's argument buffer. The group commit is the one serial
//! stage every event passes through, and on two busy cores each hand-off also waits for the
//! worker thread to be scheduled. So a batch locks the handle once
//! (`SqliteConnection::lock_handle`: one hand-off, after which the worker thread waits) and runs
//! its whole transaction on the calling thread — the event writer's own thread — through
//! SQLite's C API: one single-row statement per kind, prepared once per batch, its values bound
//! without copies (`SQLITE_STATIC`: the rows outlive the statements), stepped and reset per row.
//!
//! Everything else on the writer connection (idempotency claims, deletes, the reaper, the
//! migrations) still goes through sqlx. This module is the crate's only `unsafe` code; it is
//! kept to the few calls a group commit needs, each wrapped in a safe method below.

use std::ffi::{CStr, c_char, c_int};
use std::marker::PhantomData;
use std::ptr::NonNull;

use libsqlite3_sys as ffi;
use sqlx::SqliteConnection;
use sqlx::sqlite::LockedSqliteHandle;

use super::batch::Rows;
use super::chunks::Body;
use crate::error::{Error, Result};

/// Writes a batch's rows through `conn`: in one `BEGIN IMMEDIATE … COMMIT` transaction, or as
/// its own statement when the batch is one row. On an error the transaction is rolled back, so
/// nothing of the batch is left.
pub(super) async fn write(conn: &mut SqliteConnection, rows: &Rows) -> Result<()> {
    let mut handle = conn.lock_handle().await?;
    let db = Db::new(&mut handle);
    let single = rows.len() <= 1;
    if single {
        return db.write(rows, "");
    }
    db.exec(c"BEGIN IMMEDIATE")?;
    let written = db.write(rows, " OR FAIL").and_then(|()| db.exec(c"COMMIT"));
    if written.is_err() && !db.autocommit() {
        // On some errors (disk full, I/O) SQLite has already rolled back by itself.
        let _ = db.exec(c"ROLLBACK");
    }
    written
}

/// A connection handle borrowed for one batch. Every call leaves the connection as sqlx expects
/// it: no transaction open, no statement left unfinalized, no setting changed.
struct Db<'h> {
    /// Open, and ours alone while the lock is held: sqlx's worker thread waits on it.
    raw: NonNull<ffi::sqlite3>,
    lock: PhantomData<&'h mut ()>,
}

impl<'h> Db<'h> {
    fn new(handle: &'h mut LockedSqliteHandle<'_>) -> Self {
        Db {
            raw: handle.as_raw_handle(),
            lock: PhantomData,
        }
    }

    /// Inserts and updates the rows. `conflict` is `" OR FAIL"` inside a transaction: with
    /// SQLite's default (`ABORT`) a statement in a transaction that writes more than one B-tree
    /// (a row and its index entries) first copies every page it changes to a statement journal
    /// so that it can undo just itself; `FAIL` needs none, and the caller rolls the whole
    /// transaction back on any error. (In autocommit mode `FAIL` would keep a partial write.)
    fn write(&self, rows: &Rows, conflict: &str) -> Result<()> {
        if !rows.inserts.is_empty() {
            let mut insert = self.prepare(&format!(
                "INSERT{conflict} INTO jobs (id, status, created_at, updated_at, spec, result, \
                 last_event_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ))?;
            for job in &rows.inserts {
                insert.text(1, &job.id)?;
                insert.text(2, job.values.status)?;
                insert.double(3, job.created_at)?;
                insert.double(4, job.updated_at)?;
                insert.text(5, &job.values.spec)?;
                insert.text_or_null(6, job.values.result.as_deref())?;
                insert.int64(7, job.values.last_event_id)?;
                insert.run()?;
            }
        }
        if !rows.chunks.is_empty() {
            let mut insert = self.prepare(&format!(
                "INSERT{conflict} INTO event_chunks (job_id, first_id, last_id, events) \
                 VALUES (?1, ?2, ?3, ?4)"
            ))?;
            for chunk in &rows.chunks {
                insert.text(1, &chunk.job_id)?;
                insert.int64(2, chunk.first_id)?;
                insert.int64(3, chunk.last_id)?;
                match &chunk.events {
                    Body::Text(text) => insert.text(4, text)?,
                    Body::Lz4(packed) => insert.blob(4, packed)?,
                }
                insert.run()?;
            }
        }
        if !rows.updates.is_empty() {
            let mut update = self.prepare(&format!(
                "UPDATE{conflict} jobs SET status = ?2, updated_at = ?3, result = ?4, \
                 last_event_id = ?5 WHERE id = ?1"
            ))?;
            for job in &rows.updates {
                update.text(1, &job.id)?;
                update.text(2, job.status)?;
                update.double(3, job.updated_at)?;
                update.text_or_null(4, job.result.as_deref())?;
                update.int64(5, job.last_event_id)?;
                update.run()?;
            }
        }
        Ok(())
    }

    /// Runs a statement that returns no rows.
    fn exec(&self, sql: &CStr) -> Result<()> {
        // SAFETY: `self.raw` is open (`Db::new`); `sql` is NUL-terminated; no callback.
        let rc = unsafe {
            ffi::sqlite3_exec(
                self.raw.as_ptr(),
                sql.as_ptr(),
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        self.check(rc)
    }

    /// Whether no transaction is open.
    fn autocommit(&self) -> bool {
        // SAFETY: `self.raw` is open (`Db::new`).
        unsafe { ffi::sqlite3_get_autocommit(self.raw.as_ptr()) != 0 }
    }

    fn prepare<'b>(&'b self, sql: &str) -> Result<Statement<'b>> {
        let length = c_int::try_from(sql.len())
            .map_err(|_| Error::Store("statement text too long".into()))?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: `self.raw` is open; `sql` is valid for `length` bytes; `raw` receives the
        // statement, which `Statement` finalizes.
        let rc = unsafe {
            ffi::sqlite3_prepare_v2(
                self.raw.as_ptr(),
                sql.as_ptr().cast::<c_char>(),
                length,
                &mut raw,
                std::ptr::null_mut(),
            )
        };
        self.check(rc)?;
        let raw =
            NonNull::new(raw).ok_or_else(|| Error::Store(format!("empty statement: {sql}")))?;
        Ok(Statement { db: self, raw })
    }

    /// `rc` as a result, with the connection's error message.
    fn check(&self, rc: c_int) -> Result<()> {
        if rc == ffi::SQLITE_OK || rc == ffi::SQLITE_DONE {
            return Ok(());
        }
        // SAFETY: `self.raw` is open; SQLite returns a NUL-terminated message it owns, which is
        // copied before any other call on the connection.
        let message = unsafe {
            let code = ffi::sqlite3_extended_errcode(self.raw.as_ptr());
            let text = CStr::from_ptr(ffi::sqlite3_errmsg(self.raw.as_ptr()));
            format!("(code: {code}) {}", text.to_string_lossy())
        };
        Err(Error::Store(format!(
            "error returned from database: {message}"
        )))
    }
}

/// A prepared statement whose bound values borrow data living at least as long as `'b`'s
/// connection borrow (they are bound `SQLITE_STATIC`, without a copy).
struct Statement<'b> {
    db: &'b Db<'b>,
    raw: NonNull<ffi::sqlite3_stmt>,
}

impl<'b> Statement<'b> {
    fn text(&mut self, index: c_int, value: &'b str) -> Result<()> {
        // SAFETY: the statement is live; `value` outlives it (`'b`), as `SQLITE_STATIC` needs.
        let rc = unsafe {
            ffi::sqlite3_bind_text64(
                self.raw.as_ptr(),
                index,
                value.as_ptr().cast::<c_char>(),
                value.len() as u64,
                ffi::SQLITE_STATIC(),
                ffi::SQLITE_UTF8 as u8,
            )
        };
        self.db.check(rc)
    }

    fn text_or_null(&mut self, index: c_int, value: Option<&'b str>) -> Result<()> {
        match value {
            Some(value) => self.text(index, value),
            // SAFETY: the statement is live.
            None => self
                .db
                .check(unsafe { ffi::sqlite3_bind_null(self.raw.as_ptr(), index) }),
        }
    }

    fn blob(&mut self, index: c_int, value: &'b [u8]) -> Result<()> {
        // SAFETY: as in `text`.
        let rc = unsafe {
            ffi::sqlite3_bind_blob64(
                self.raw.as_ptr(),
                index,
                value.as_ptr().cast(),
                value.len() as u64,
                ffi::SQLITE_STATIC(),
            )
        };
        self.db.check(rc)
    }

    fn int64(&mut self, index: c_int, value: i64) -> Result<()> {
        // SAFETY: the statement is live.
        let rc = unsafe { ffi::sqlite3_bind_int64(self.raw.as_ptr(), index, value) };
        self.db.check(rc)
    }

    fn double(&mut self, index: c_int, value: f64) -> Result<()> {
        // SAFETY: the statement is live.
        let rc = unsafe { ffi::sqlite3_bind_double(self.raw.as_ptr(), index, value) };
        self.db.check(rc)
    }

    /// Steps the statement to its end and resets it for the next row's values.
    fn run(&mut self) -> Result<()> {
        // SAFETY: the statement is live and every parameter is bound.
        let rc = unsafe { ffi::sqlite3_step(self.raw.as_ptr()) };
        // SAFETY: the statement is live. (After an error, reset returns the same error; the
        // step's code is the one reported.)
        unsafe { ffi::sqlite3_reset(self.raw.as_ptr()) };
        self.db.check(rc)
    }
}

impl Drop for Statement<'_> {
    fn drop(&mut self) {
        // SAFETY: the statement is live and finalized once, here.
        unsafe { ffi::sqlite3_finalize(self.raw.as_ptr()) };
    }
}
