//! The `innerloop` process as an operator of the original sees it (issue 16): legacy and
//! string-typed environment settings load, a bad one is one line naming it with exit code 2,
//! logs to a pipe carry no colours, and `--version` names the commit.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn innerloop(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_innerloop"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(std::env::temp_dir());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn effective(env: &[(&str, &str)]) -> serde_json::Value {
    let out = innerloop(&["config"], env).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Starts `innerloop serve` on ephemeral ports with a memory store and returns its stdout
/// lines up to (and including) the edge's "listening" line, then stops it.
fn serve_until_listening(env: &[(&str, &str)]) -> Vec<String> {
    let mut all = vec![
        ("JOB_STORE", "memory"),
        ("PORT", "0"),
        ("GRPC_PORT", "0"),
        ("API_BEARER_TOKENS", "t"),
    ];
    all.extend_from_slice(env);
    let mut child = innerloop(&["serve"], &all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
            panic!("innerloop serve exited with {status}: {err}");
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                let done = line.contains("edge listening");
                lines.push(line);
                if done {
                    break;
                }
            }
            Err(_) => continue,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        lines.iter().any(|l| l.contains("edge listening")),
        "never listened: {lines:?}"
    );
    lines
}

#[test]
fn legacy_rate_limit_settings_start_the_server() {
    let config = effective(&[
        ("RATE_LIMIT_OPTIMIZE_RPS", "1"),
        ("RATE_LIMIT_OPTIMIZE_BURST", "1"),
    ]);
    assert_eq!(
        config["rate_limit_per_min"], 60,
        "1 per second = 60 per minute"
    );
    assert_eq!(config["rate_limit_burst"], 1);
    serve_until_listening(&[
        ("RATE_LIMIT_OPTIMIZE_RPS", "1"),
        ("RATE_LIMIT_OPTIMIZE_BURST", "1"),
    ]);
}

#[test]
fn environment_values_are_parsed_with_their_setting_type() {
    let config = effective(&[
        ("API_BEARER_TOKENS", "12345"),
        ("REQUIRE_AUTH", "false"),
        ("SSE_BACKPRESSURE_FAIL_TIMEOUT_S", "3"),
        ("MAX_WALL_TIME_S", "2"),
        ("SERVICE_NAME", "42"),
        ("EVALUATION_RUBRIC_DEFAULT", "clarity"),
        ("DEFAULT_MODE_ITERATION_DELAY_MS", "0"),
        ("METRICS_REQUIRE_AUTH", "true"),
    ]);
    assert_eq!(config["api_bearer_tokens"], serde_json::json!(["***"]));
    assert_eq!(config["require_auth"], false);
    assert_eq!(config["sse_backpressure_fail_timeout_s"], 3.0);
    assert_eq!(config["max_wall_time_s"], 2.0);
    assert_eq!(config["service_name"], "42");
    assert_eq!(config["evaluation_rubric_default"], "clarity");
    assert_eq!(config["default_mode_iteration_delay_ms"], 0);
    assert_eq!(config["metrics_require_auth"], true);
    // `--dev` is a flag, never an environment variable.
    assert_eq!(effective(&[("DEV_MODE", "true")])["dev_mode"], false);
}

#[test]
fn a_bad_setting_is_one_line_naming_it_and_exit_code_2() {
    for (var, value) in [
        ("PORT", "not-a-port"),
        ("RATE_LIMIT_BURST", "-1"),
        ("RATE_LIMIT_OPTIMIZE_BURST", "lots"),
        ("REQUIRE_AUTH", "maybe"),
        ("MAX_ITERATIONS", "0"),
    ] {
        let out = innerloop(&["serve"], &[(var, value), ("RUST_BACKTRACE", "1")])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(err.contains(var), "{var} named: {err}");
        if var != "MAX_ITERATIONS" {
            assert!(err.contains(value), "{value} shown: {err}");
        }
        assert!(
            !err.contains("backtrace") && !err.contains("panicked"),
            "{err}"
        );
    }
}

#[test]
fn logs_to_a_pipe_carry_no_ansi_colours() {
    let lines = serve_until_listening(&[("LOG_FORMAT", "pretty")]);
    for line in &lines {
        assert!(!line.contains('\u{1b}'), "ANSI escape in {line:?}");
    }
}

#[test]
fn version_names_the_version_and_the_commit() {
    let out = innerloop(&["--version"], &[]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let expected = head.unwrap_or_else(|| "unknown".into());
    assert!(text.contains(&format!("commit {expected}")), "{text}");
}
