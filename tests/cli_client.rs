//! The client subcommands of the `innerloop` binary against a real server on 127.0.0.1:0:
//! the binary runs as a child process, as a user would run it.

mod support;

use std::net::SocketAddr;

use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use innerloop::api::pb;
use innerloop::config::Settings;
use support::grpc::{Core, test_settings, ticker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_innerloop");

fn command(server: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg("--server")
        .arg(server)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .kill_on_drop(true);
    cmd
}

async fn output(mut cmd: Command) -> Output {
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the command finished in time")
        .expect("ran")
}

async fn cli(core: &Core, args: &[&str]) -> Output {
    output(command(&format!("http://{}", core.addr), args)).await
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A job file for a small offline GEPA run on inline JSONL examples.
fn job_dir(extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = String::new();
    for i in 0..8 {
        lines.push_str(&format!(
            "{{\"id\":\"q{i}\",\"input\":\"What is {i}+{i}?\",\"expected\":\"{}\"}}\n",
            2 * i
        ));
    }
    std::fs::write(dir.path().join("qa.jsonl"), lines).unwrap();
    std::fs::write(
        dir.path().join("job.yaml"),
        format!(
            "prompt: Answer the question.\nmode: gepa\nexamples: qa.jsonl\nmetric: exact_match\nbudget:\n  max_rollouts: 40\n{extra}"
        ),
    )
    .unwrap();
    dir
}

fn job_file(dir: &tempfile::TempDir) -> String {
    dir.path().join("job.yaml").to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_wait_prints_the_id_then_plain_progress_lines_in_a_pipe_and_exits_zero() {
    let core = Core::start(test_settings(), None).await;
    let dir = job_dir("");
    let out = cli(&core, &["run", &job_file(&dir), "--wait"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    assert_eq!(id.len(), 36, "stdout is the job id: {id:?}");
    let err = stderr(&out);
    assert!(
        !err.contains('\r') && !err.contains('\x1b'),
        "no redraws in a pipe: {err:?}"
    );
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() >= 2, "{err}");
    assert!(lines[0].starts_with("gen 0 | calls "), "{err}");
    assert!(lines[0].contains("/40 |"), "calls of the budget: {err}");
    let last = lines.last().unwrap();
    assert!(last.starts_with("finished | gen "), "{err}");
    assert!(last.contains("best ") && last.contains("cost $"), "{err}");
    let job = core
        .jobs()
        .await
        .get_job(pb::GetJobRequest { job_id: id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.status, pb::JobStatus::Finished as i32);
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_wait_in_a_terminal_redraws_one_progress_line_with_a_bar() {
    let core = Core::start(test_settings(), None).await;
    let dir = job_dir("");
    // util-linux `script` runs the command on a pseudo-terminal; -e passes its exit code on.
    let inner = format!(
        "{BIN} run {} --wait --server http://{}",
        job_file(&dir),
        core.addr
    );
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", &inner, "/dev/null"])
        .kill_on_drop(true);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let screen = stdout(&out);
    assert!(screen.contains("\r\x1b[2K"), "redrawn in place: {screen:?}");
    assert!(screen.contains("[#"), "a budget bar: {screen:?}");
    assert!(screen.contains("finished | gen "), "{screen:?}");
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_without_wait_returns_the_id_and_get_and_result_read_the_job() {
    let core = Core::start(test_settings(), None).await;
    let dir = job_dir("seed: 7\n");
    let out = cli(&core, &["run", &job_file(&dir)]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    assert!(stderr(&out).is_empty(), "no progress without --wait");
    // Not finished yet, or already: watch waits for it either way.
    let watched = cli(&core, &["watch", &id, "--quiet"]).await;
    assert_eq!(watched.status.code(), Some(0));

    let got = cli(&core, &["get", &id]).await;
    let state: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(state["job_id"], id.as_str());
    assert_eq!(state["status"], "finished");

    let best = cli(&core, &["result", &id]).await;
    assert_eq!(best.status.code(), Some(0), "{}", stderr(&best));
    let whole = cli(&core, &["result", &id, "--json"]).await;
    let whole: serde_json::Value = serde_json::from_slice(&whole.stdout).unwrap();
    let best_prompt = whole["result"]["best_prompt"].as_str().unwrap();
    assert_eq!(stdout(&best), format!("{best_prompt}\n"));
    assert!(!whole["result"]["candidates"].as_array().unwrap().is_empty());

    let missing = cli(&core, &["get", "00000000-0000-0000-0000-000000000000"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("NotFound"),
        "{}",
        stderr(&missing)
    );
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_exits_two_when_the_job_is_cancelled_and_one_when_it_fails() {
    let core = Core::start(test_settings(), Some(ticker(200, 50))).await;
    let created = core
        .optimizer()
        .await
        .create_job(support::grpc::request("slow"))
        .await
        .unwrap()
        .into_inner();
    let server = format!("http://{}", core.addr);
    let watcher = tokio::spawn(output(command(
        &server,
        &["watch", &created.job_id, "--events"],
    )));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancelled = cli(&core, &["cancel", &created.job_id]).await;
    assert_eq!(
        stdout(&cancelled),
        format!("{} cancelled\n", created.job_id)
    );
    let watched = watcher.await.unwrap();
    assert_eq!(watched.status.code(), Some(2), "{}", stderr(&watched));
    let last = stdout(&watched).lines().last().unwrap().to_string();
    let last: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(last["type"], "cancelled");

    let again = cli(&core, &["cancel", &created.job_id]).await;
    assert_eq!(again.status.code(), Some(1), "already terminal");
    core.shutdown().await;

    // A GEPA budget smaller than the validation set fails the job.
    let core = Core::start(test_settings(), None).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("job.yaml"),
        "prompt: p\ndataset: toy_qa\nbudget: {max_rollouts: 1}\n",
    )
    .unwrap();
    let out = cli(&core, &["run", &job_file(&dir), "--wait"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).lines().last().unwrap().starts_with("failed"));
    core.shutdown().await;
}

/// Forwards TCP to `target`; the first connection is cut after `cut_after` bytes from the
/// server, later ones are left alone.
async fn flaky_proxy(target: SocketAddr, cut_after: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut client, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut server = tokio::net::TcpStream::connect(target).await.unwrap();
            if !first {
                tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                continue;
            }
            first = false;
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.split();
                let (mut sr, mut sw) = server.split();
                let up = tokio::io::copy(&mut cr, &mut sw);
                let down = async {
                    let mut sent = 0;
                    let mut buf = [0u8; 256];
                    while sent < cut_after {
                        let n = sr.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        cw.write_all(&buf[..n]).await.unwrap();
                        sent += n;
                    }
                };
                tokio::select! { _ = up => {}, _ = down => {} }
                // Dropping both halves resets the connection mid-stream.
            });
        }
    });
    (addr, connections)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_after_a_dropped_connection_without_losing_or_repeating_events() {
    let core = Core::start(test_settings(), Some(ticker(40, 10))).await;
    let created = core
        .optimizer()
        .await
        .create_job(support::grpc::request("p"))
        .await
        .unwrap()
        .into_inner();
    let (proxy, connections) = flaky_proxy(core.addr, 1500).await;
    let out = output(command(
        &format!("http://{proxy}"),
        &["watch", &created.job_id, "--events", "--quiet"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ids: Vec<u64> = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let expected: Vec<u64> = (1..=ids.len() as u64).collect();
    assert_eq!(ids, expected, "every event once, in order");
    assert_eq!(ids.len(), 42, "started, 40 mutations, finished");
    assert!(
        connections.load(Ordering::SeqCst) >= 2,
        "the first connection was cut"
    );
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_lists_jobs_newest_first_and_filters_by_status() {
    let core = Core::start(test_settings(), Some(ticker(200, 50))).await;
    let mut optimizer = core.optimizer().await;
    let a = optimizer
        .create_job(support::grpc::request("a"))
        .await
        .unwrap()
        .into_inner();
    let b = optimizer
        .create_job(support::grpc::request("b"))
        .await
        .unwrap()
        .into_inner();
    cli(&core, &["cancel", &a.job_id]).await;
    let all = stdout(&cli(&core, &["ls"]).await);
    let rows: Vec<&str> = all.lines().collect();
    assert_eq!(rows.len(), 2, "{all}");
    assert!(
        rows[0].starts_with(&b.job_id) && rows[1].starts_with(&a.job_id),
        "{all}"
    );
    assert!(
        rows[1].contains(" cancelled ") && rows[1].ends_with(" ago"),
        "{all}"
    );
    let cancelled = stdout(&cli(&core, &["ls", "--status", "cancelled", "--json"]).await);
    let list: serde_json::Value = serde_json::from_str(&cancelled).unwrap();
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(list["jobs"][0]["job_id"], a.job_id.as_str());
    let bad = cli(&core, &["ls", "--status", "sleeping"]).await;
    assert_eq!(bad.status.code(), Some(1));
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_import_reads_csv_and_eval_wait_prints_the_score() {
    let core = Core::start(test_settings(), None).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("ex.csv");
    std::fs::write(
        &csv,
        "id,input,expected,topic\na,\"Say \"\"hi\"\"\",hi,greet\nb,\"x, y\",z,list\n",
    )
    .unwrap();
    let out = cli(&core, &["examples", "import", csv.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "imported 2 examples\n");
    let listed = innerloop::api::pb::examples_service_client::ExamplesServiceClient::new(
        core.channel().await,
    )
    .list_examples(pb::ListExamplesRequest::default())
    .await
    .unwrap()
    .into_inner();
    let a = listed.examples.iter().find(|e| e.id == "a").unwrap();
    assert_eq!(a.input, "Say \"hi\"");
    assert_eq!(a.expected.as_deref(), Some("hi"));

    let out = cli(
        &core,
        &[
            "eval",
            "--prompt",
            "Be brief.",
            "--metric",
            "exact_match",
            "--wait",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let score: f64 = stdout(&out).trim().parse().expect("a score on stdout");
    assert!((0.0..=1.0).contains(&score));
    assert!(stderr(&out).contains("cases 2/2"), "{}", stderr(&out));

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"input\":\"a\"}\nnot json\n").unwrap();
    let out = cli(&core, &["examples", "import", bad.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_comes_from_the_environment_or_a_file() {
    let settings = Settings {
        require_auth: true,
        dev_mode: false,
        api_bearer_tokens: vec!["tok-cli".into()],
        ..test_settings()
    };
    let core = Core::start(settings, Some(ticker(1, 0))).await;
    let server = format!("http://{}", core.addr);
    let denied = output(command(&server, &["ls"])).await;
    assert_eq!(denied.status.code(), Some(1));
    assert!(
        stderr(&denied).contains("Unauthenticated"),
        "{}",
        stderr(&denied)
    );

    let mut from_env = command(&server, &["ls"]);
    from_env.env("INNERLOOP_TOKEN", "tok-cli");
    assert_eq!(output(from_env).await.status.code(), Some(0));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "tok-cli\n").unwrap();
    let from_file = output(command(
        &server,
        &["ls", "--token-file", file.to_str().unwrap()],
    ))
    .await;
    assert_eq!(from_file.status.code(), Some(0), "{}", stderr(&from_file));
    core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_steer_resume_and_branch_from_the_command_line() {
    let (url, fake) = support::fake_llm::start().await;
    *fake.latency.lock().unwrap() = Duration::from_millis(5);
    let settings = Settings {
        use_model_stub: false,
        openai_base_url: Some(url),
        reflection_model_id: Some(support::fake_llm::REFLECT_MODEL.into()),
        ..test_settings()
    };
    let core = Core::start(settings, None).await;
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = support::fake_llm::examples()
        .into_iter()
        .map(|e| {
            serde_json::json!({"id": e.id, "input": e.input, "expected": e.expected}).to_string()
        })
        .collect();
    std::fs::write(dir.path().join("ex.jsonl"), lines.join("\n")).unwrap();
    std::fs::write(
        dir.path().join("job.yaml"),
        format!(
            "prompt: {:?}\nexamples: ex.jsonl\nmetric: exact_match\ntarget_model: {}\nseed: 7\nbudget: {{max_rollouts: 200}}\ngepa: {{minibatch_size: 1, use_merge: false}}\n",
            support::fake_llm::SEED_PROMPT,
            support::fake_llm::TASK_MODEL
        ),
    )
    .unwrap();
    let out = cli(&core, &["run", &job_file(&dir)]).await;
    let id = stdout(&out).trim().to_string();
    let paused = cli(&core, &["pause", &id]).await;
    assert_eq!(
        stdout(&paused),
        format!("{id} paused\n"),
        "{}",
        stderr(&paused)
    );

    let text = dir.path().join("candidate.txt");
    std::fs::write(
        &text,
        format!(
            "{}\nWritten by hand. {}",
            support::fake_llm::SEED_PROMPT,
            support::fake_llm::MIRROR_RULE
        ),
    )
    .unwrap();
    let steered = cli(
        &core,
        &[
            "steer",
            &id,
            "--feedback",
            "Keep it short.",
            "--candidate-file",
            text.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(
        stdout(&steered),
        format!("{id} queued feedback and candidate\n"),
        "{}",
        stderr(&steered)
    );
    let resumed = cli(&core, &["resume", &id]).await;
    assert_eq!(
        stdout(&resumed),
        format!("{id} running\n"),
        "{}",
        stderr(&resumed)
    );
    let watched = cli(&core, &["watch", &id, "--events", "--quiet"]).await;
    assert_eq!(watched.status.code(), Some(0));
    assert!(
        stdout(&watched).contains("\"feedback\":[\"Keep it short.\"]"),
        "the feedback reached a reflection"
    );
    let whole = cli(&core, &["result", &id, "--json"]).await;
    let whole: serde_json::Value = serde_json::from_slice(&whole.stdout).unwrap();
    let candidates = whole["result"]["candidates"].as_array().unwrap();
    assert!(candidates.iter().any(|c| c["origin"] == "human"), "{whole}");

    let branched = cli(
        &core,
        &[
            "branch",
            &id,
            "--candidate",
            "0",
            "--max-rollouts",
            "30",
            "--wait",
            "--quiet",
        ],
    )
    .await;
    assert_eq!(branched.status.code(), Some(0), "{}", stderr(&branched));
    let child = stdout(&branched).trim().to_string();
    assert_ne!(child, id);
    let listed = stdout(&cli(&core, &["ls"]).await);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&child) && l.contains("calls ") && l.contains("/30")),
        "{listed}"
    );
    let again = cli(&core, &["steer", &id, "--feedback", "late"]).await;
    assert_eq!(
        again.status.code(),
        Some(1),
        "a finished job cannot be steered"
    );
    core.shutdown().await;
}
