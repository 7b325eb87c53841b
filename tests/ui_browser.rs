//! The workbench page in a real headless browser: Debian's `chromium` driven over the W3C
//! WebDriver protocol by `chromedriver` (a few JSON calls with reqwest; no driver crate). The
//! server runs with auth on and an offline model (the fake OpenAI-compatible server of
//! `tests/fake_llm`, on 127.0.0.1), so the run really improves and draws a real lineage.
//!
//! Screenshots land in `target/ui-artifacts/`. `.ci/test.sh` installs chromium and
//! chromium-driver when missing; without them this test fails (it does not skip).

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use innerloop::config::{Settings, StoreKind};
use innerloop::server::{self, Listeners};
use serde_json::{Value, json};

const TOKEN: &str = "tok-browser";
const FEEDBACK: &str = "Say which rule applies before answering.";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver process and one browser session; both end on drop.
struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    async fn start() -> Browser {
        for path in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: apt-get install -y chromium chromium-driver (.ci/test.sh does)"
            );
        }
        let port = free_port();
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1400,1850".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_string();
        Browser {
            http,
            base,
            session,
            driver,
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        if answer["value"]["error"].is_string() {
            panic!("webdriver {path}: {}", answer["value"]);
        }
        answer["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    async fn js(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_string()
    }

    async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Sets a form field's value directly (long texts: typing them key by key is slow).
    async fn set_value(&self, id: &str, value: &str) {
        self.js(
            "document.getElementById(arguments[0]).value = arguments[1];",
            json!([id, value]),
        )
        .await;
    }

    /// Waits until `condition` (a JS expression) is true in the page.
    async fn wait_for(&self, what: &str, condition: &str) {
        let script = format!("return !!({condition});");
        for _ in 0..600 {
            if self.js(&script, json!([])).await == json!(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = self
            .js(
                "return document.getElementById('notice').textContent + ' | status: ' + document.body.dataset.status + ' | log: ' + document.getElementById('log').textContent.slice(-800);",
                json!([]),
            )
            .await;
        panic!("timed out waiting for {what}: {log}");
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let encoded = self
            .call(reqwest::Method::GET, "/screenshot", None)
            .await
            .as_str()
            .unwrap()
            .to_string();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ui-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, base64_decode(&encoded)).unwrap();
        path
    }

    async fn quit(mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.http.delete(url).send().await;
        let _ = self.driver.kill().await;
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let digits: Vec<u32> = chunk
            .iter()
            .take_while(|c| **c != b'=')
            .map(|c| value(*c))
            .collect();
        let mut n = 0u32;
        for (i, d) in digits.iter().enumerate() {
            n |= d << (18 - 6 * i);
        }
        for i in 0..digits.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

struct Server {
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start_server(model_url: String) -> Server {
    let settings = Settings {
        job_store: StoreKind::Memory,
        require_auth: true,
        api_bearer_tokens: vec![TOKEN.into()],
        rate_limit_per_min: 600_000,
        rate_limit_burst: 100_000,
        max_wall_time_s: 120.0,
        shutdown_grace_s: 2.0,
        use_model_stub: false,
        openai_base_url: Some(model_url),
        reflection_model_id: Some(support::fake_llm::REFLECT_MODEL.into()),
        ..Settings::default()
    };
    let listeners = Listeners::ephemeral().await.unwrap();
    let base = format!("http://{}", listeners.http.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::run(Arc::new(settings), listeners, async move {
        let _ = stopped.await;
    }));
    Server {
        base,
        stop: Some(stop),
        task,
    }
}

fn examples_jsonl() -> String {
    support::fake_llm::examples()
        .into_iter()
        .map(|e| {
            json!({"id": e.id, "input": e.input, "expected": e.expected, "meta": e.meta})
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_from_the_form_is_paused_steered_resumed_and_finishes_with_its_lineage() {
    let (model_url, fake) = support::fake_llm::start().await;
    // Slow enough that the run is watched live, not only replayed.
    *fake.latency.lock().unwrap() = Duration::from_millis(40);
    let server = start_server(model_url).await;
    let browser = Browser::start().await;
    browser.goto(&format!("{}/ui", server.base)).await;

    browser.type_into("#token", TOKEN).await;
    browser.click("#auth button").await;
    browser
        .wait_for(
            "the token to be accepted",
            "document.getElementById('notice').textContent === 'token set'",
        )
        .await;

    browser
        .set_value("prompt", support::fake_llm::SEED_PROMPT)
        .await;
    browser.set_value("examples", &examples_jsonl()).await;
    browser
        .set_value("target-model", support::fake_llm::TASK_MODEL)
        .await;
    browser.set_value("metric", "exact_match").await;
    browser.set_value("max-rollouts", "120").await;
    // One example per reflection: the fake learns one rule at a time, so the lineage has depth.
    browser.set_value("minibatch", "1").await;
    browser.click("#start").await;

    browser
        .wait_for(
            "events to arrive over the stream",
            "document.querySelectorAll('#log li[data-type=generation_started]').length >= 1",
        )
        .await;

    // Pause, steer (feedback + a hand-written candidate), resume.
    browser.click("#btn-pause").await;
    browser
        .wait_for(
            "the run to pause",
            "document.body.dataset.status === 'paused'",
        )
        .await;
    browser.click("#btn-steer").await;
    browser.set_value("steer-feedback", FEEDBACK).await;
    browser
        .set_value(
            "steer-text",
            &format!(
                "{}\nWritten by hand. {}",
                support::fake_llm::SEED_PROMPT,
                support::fake_llm::DOUBLE_RULE
            ),
        )
        .await;
    browser.click("#steer-add").await;
    browser.screenshot("steer-dialog.png").await;
    browser.click("#steer-send").await;
    browser
        .wait_for(
            "the steering to be accepted",
            "document.getElementById('notice').textContent === 'steering sent'",
        )
        .await;
    browser.click("#btn-resume").await;

    browser
        .wait_for(
            "the run to finish",
            "document.body.dataset.status === 'finished'",
        )
        .await;
    browser
        .wait_for(
            "a lineage with children",
            "document.querySelectorAll('#lineage .node').length >= 3",
        )
        .await;
    let drawn = browser
        .js(
            "return {
                nodes: document.querySelectorAll('#lineage .node').length,
                edges: document.querySelectorAll('#lineage .edge').length,
                plot: document.querySelectorAll('#plot path.best-line').length,
                rows: document.querySelectorAll('#matrix tr[data-id]').length,
                best: document.getElementById('g-best').textContent,
                diff: document.querySelectorAll('#diff ins').length,
                jobs: document.querySelectorAll('#jobs tbody tr').length,
                terminal: document.querySelectorAll('#log li[data-type=finished]').length,
                human: document.querySelectorAll('#lineage .node[data-origin=human]').length,
                paused: document.querySelectorAll('#log li[data-type=paused]').length,
                resumed: document.querySelectorAll('#log li[data-type=resumed]').length,
                steered: [...document.querySelectorAll('#log li[data-type=reflection_started]')]
                    .filter((li) => li.textContent.includes('human feedback: ' + arguments[0])).length,
            };",
            json!([FEEDBACK]),
        )
        .await;
    assert_eq!(
        (drawn["paused"].as_u64(), drawn["resumed"].as_u64()),
        (Some(1), Some(1)),
        "{drawn}"
    );
    assert!(
        drawn["steered"].as_u64().unwrap() >= 1,
        "a reflection got the feedback: {drawn}"
    );
    assert_eq!(
        drawn["human"], 1,
        "the hand-written candidate is in the lineage: {drawn}"
    );
    assert!(drawn["edges"].as_u64().unwrap() >= 1, "{drawn}");
    assert_eq!(drawn["plot"], 1, "{drawn}");
    assert_eq!(
        drawn["rows"], drawn["nodes"],
        "one matrix row per candidate: {drawn}"
    );
    assert_eq!(drawn["terminal"], 1, "{drawn}");
    assert!(
        drawn["diff"].as_u64().unwrap() >= 1,
        "the best child differs from its parent: {drawn}"
    );
    assert!(drawn["jobs"].as_u64().unwrap() >= 1, "{drawn}");
    let best: f64 = drawn["best"].as_str().unwrap().parse().unwrap();
    assert!(best > 0.5, "the offline run improved: {drawn}");
    let shot = browser.screenshot("run-view.png").await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);

    browser.quit().await;
    let mut server = server;
    let _ = server.stop.take().unwrap().send(());
    server.task.await.unwrap().unwrap();
}
