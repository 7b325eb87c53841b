//! Following a job's events from the client: `WatchJob` from the last event seen, again after
//! a dropped connection (the server replays what was missed, so nothing is shown twice or
//! lost), until the terminal event. Progress goes to stderr: redrawn in place in a terminal,
//! plain lines in a pipe; `--events` prints every event as its JSON envelope on stdout.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use tonic::Code;

use super::connect::Clients;
use super::progress::Progress;
use crate::api::pb;
use crate::domain::JobStatus;

/// Reconnect attempts in a row before giving up (with back-off capped at 2 s: about a minute).
const MAX_RECONNECTS: u32 = 30;
/// A terminal redraws at most this often.
const REDRAW_EVERY: Duration = Duration::from_millis(100);

/// How the progress is shown.
#[derive(Debug, Clone, Copy)]
pub struct Display {
    /// Redraw one line in place (stderr is a terminal) instead of printing plain lines.
    pub live: bool,
    /// Print each event's JSON envelope on stdout.
    pub events: bool,
    /// No progress at all.
    pub quiet: bool,
}

impl Display {
    pub fn detect(events: bool, quiet: bool) -> Display {
        Display {
            live: std::io::stderr().is_terminal(),
            events,
            quiet,
        }
    }
}

/// How a followed job ended.
#[derive(Debug)]
pub enum Ending {
    Terminal(JobStatus, Progress),
    /// Ctrl-C: we stopped watching; the job goes on.
    Detached(Progress),
}

/// The exit code of a job's final status: 0 finished, 2 cancelled, 1 anything else.
pub fn exit_code(status: JobStatus) -> i32 {
    match status {
        JobStatus::Finished => 0,
        JobStatus::Cancelled => 2,
        _ => 1,
    }
}

/// Whether a failed call is worth repeating on a new connection.
fn transient(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled | Code::Aborted
    )
}

struct Screen {
    display: Display,
    drawn: Option<Instant>,
}

impl Screen {
    fn show(&mut self, progress: &Progress, due: bool, last: bool) {
        if self.display.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.display.live {
            let stale = self.drawn.is_none_or(|t| t.elapsed() >= REDRAW_EVERY);
            if stale || last {
                let bar = progress.bar(20).map(|b| b + " ").unwrap_or_default();
                let _ = write!(err, "\r\x1b[2K{bar}{}", progress.line());
                if last {
                    let _ = writeln!(err);
                }
                let _ = err.flush();
                self.drawn = Some(Instant::now());
            }
        } else if due {
            let _ = writeln!(err, "{}", progress.line());
        }
    }
}

/// Follows `job_id` from `after_event_id` until its terminal event (or Ctrl-C).
pub async fn follow(
    clients: &Clients,
    job_id: &str,
    after_event_id: u64,
    display: Display,
) -> anyhow::Result<Ending> {
    let mut progress = Progress {
        last_event_id: after_event_id,
        ..Progress::default()
    };
    let mut screen = Screen {
        display,
        drawn: None,
    };
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut failures = 0u32;
    loop {
        let mut jobs = clients.jobs();
        let watch = jobs.watch_job(pb::WatchJobRequest {
            job_id: job_id.to_string(),
            after_event_id: progress.last_event_id,
        });
        let outcome = tokio::select! {
            _ = &mut ctrl_c => return Ok(detach(job_id, progress, display)),
            outcome = watch => outcome,
        };
        let mut stream = match outcome {
            Ok(response) => response.into_inner(),
            Err(status) if transient(&status) && failures < MAX_RECONNECTS => {
                failures += 1;
                backoff(failures).await;
                continue;
            }
            Err(status) => anyhow::bail!("{}", status.message()),
        };
        loop {
            let next = tokio::select! {
                _ = &mut ctrl_c => return Ok(detach(job_id, progress, display)),
                next = stream.message() => next,
            };
            match next {
                Ok(Some(event)) => {
                    failures = 0;
                    if event.id <= progress.last_event_id {
                        continue;
                    }
                    let line = display
                        .events
                        .then(|| crate::api::envelope::EventEnvelope::try_from(event.clone()));
                    let Ok(event) = crate::domain::Event::try_from(event) else {
                        continue;
                    };
                    let due = progress.observe(&event);
                    if let Some(Ok(envelope)) = line {
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "{}", envelope.json);
                        let _ = out.flush();
                    }
                    if let Some(status) = event.payload.terminal_status() {
                        screen.show(&progress, true, true);
                        return Ok(Ending::Terminal(status, progress));
                    }
                    screen.show(&progress, due, false);
                }
                // The stream ended before the terminal event (a restarting server): resume.
                Ok(None) => break,
                Err(status) if transient(&status) && failures < MAX_RECONNECTS => break,
                Err(status) => anyhow::bail!("{}", status.message()),
            }
        }
        failures += 1;
        if failures > MAX_RECONNECTS {
            anyhow::bail!("lost the connection to the server");
        }
        backoff(failures).await;
    }
}

fn detach(job_id: &str, progress: Progress, display: Display) -> Ending {
    if !display.quiet {
        eprintln!(
            "\nstopped watching at event {}; the job goes on (innerloop watch {job_id})",
            progress.last_event_id
        );
    }
    Ending::Detached(progress)
}

async fn backoff(attempt: u32) {
    let ms = (100u64 << attempt.min(5)).min(2000);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
