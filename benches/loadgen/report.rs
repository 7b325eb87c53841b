//! Measurements and how they are printed: latency histograms (microseconds, hdrhistogram),
//! counts, throughput, and every number next to the seed checklists' target as a ratio.

use std::time::Duration;

use hdrhistogram::Histogram;

/// The seed checklists' promises (`/work/shared/seeds/`, "Performance Targets").
pub mod target {
    use std::time::Duration;
    pub const P50: Duration = Duration::from_millis(30);
    pub const P95: Duration = Duration::from_millis(120);
    pub const P99: Duration = Duration::from_millis(200);
    /// Requests per second.
    pub const THROUGHPUT: f64 = 100.0;
    /// Error rate, as a fraction.
    pub const ERROR_RATE: f64 = 0.01;
    pub const SHUTDOWN: Duration = Duration::from_secs(5);
    /// The upper end of "100–1000 SSE clients".
    pub const STREAM_CLIENTS: usize = 1000;
}

/// A latency histogram in microseconds, 1 µs to 10 min, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds are valid")
}

pub fn record(hist: &mut Histogram<u64>, d: Duration) {
    hist.saturating_record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1));
}

/// One measured load step: ok/error counts over a wall-clock window and the ok latencies.
pub struct Step {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
}

impl Step {
    pub fn new() -> Step {
        Step {
            ok: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            latency: histogram(),
        }
    }

    pub fn merge(&mut self, other: &Step) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.latency
            .add(&other.latency)
            .expect("histograms share bounds");
    }

    pub fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn error_rate(&self) -> f64 {
        let all = self.ok + self.errors;
        if all == 0 {
            0.0
        } else {
            self.errors as f64 / all as f64
        }
    }
}

pub fn quantile(hist: &Histogram<u64>, q: f64) -> Duration {
    Duration::from_micros(hist.value_at_quantile(q))
}

/// `1.23 ms` / `456 µs` / `2.10 s`.
pub fn fmt_d(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// A ratio with enough digits to be read: `0.0045×`, `0.31×`, `123×`.
pub fn fmt_ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}×")
    } else if r >= 1.0 {
        format!("{r:.1}×")
    } else if r >= 0.01 {
        format!("{r:.3}×")
    } else {
        format!("{r:.5}×")
    }
}

pub fn header(title: &str) {
    println!("\n### {title}\n");
}

/// Table header for latency rows.
pub fn latency_table_header() {
    println!("| what | conc | ok | err | per s | p50 | p95 | p99 | max |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
}

/// One latency row.
pub fn latency_row(what: &str, conc: usize, step: &Step) {
    let h = &step.latency;
    println!(
        "| {what} | {conc} | {} | {} | {:.0} | {} | {} | {} | {} |",
        step.ok,
        step.errors,
        step.per_second(),
        fmt_d(quantile(h, 0.50)),
        fmt_d(quantile(h, 0.95)),
        fmt_d(quantile(h, 0.99)),
        fmt_d(Duration::from_micros(h.max())),
    );
}

/// The same numbers as ratios of the seed targets (lower is better for latency and errors,
/// higher for throughput).
pub fn versus_targets(what: &str, step: &Step, throughput_unit: &str) -> String {
    let h = &step.latency;
    let (p50, p95, p99) = (quantile(h, 0.50), quantile(h, 0.95), quantile(h, 0.99));
    format!(
        "{what}: p50 {} = {} the 30 ms target; p95 {} = {} the 120 ms target; p99 {} = {} the \
         200 ms target; {:.0} {throughput_unit}/s = {} the 100/s target; errors {:.2}% (target < {}%)",
        fmt_d(p50),
        fmt_ratio(p50.as_secs_f64() / target::P50.as_secs_f64()),
        fmt_d(p95),
        fmt_ratio(p95.as_secs_f64() / target::P95.as_secs_f64()),
        fmt_d(p99),
        fmt_ratio(p99.as_secs_f64() / target::P99.as_secs_f64()),
        step.per_second(),
        fmt_ratio(step.per_second() / target::THROUGHPUT),
        step.error_rate() * 100.0,
        target::ERROR_RATE * 100.0,
    )
}

/// Resident set size of this process in KiB (`VmRSS` of `/proc/self/status`), when readable.
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// The kernel's `TcpExt ListenOverflows` counter (`/proc/net/netstat`): connections dropped
/// because a listener's accept queue was full; each costs its client a SYN retry (1 s).
pub fn listen_overflows() -> Option<u64> {
    let netstat = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let at = names
        .split_whitespace()
        .position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(at)?.parse().ok()
}
