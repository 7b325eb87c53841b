//! The `innerloop` binary's configuration layering: defaults → file → env → flags.

use std::process::Command;

fn config(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_innerloop"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run innerloop");
    let text = String::from_utf8_lossy(if out.status.success() {
        &out.stdout
    } else {
        &out.stderr
    })
    .to_string();
    (out.status.success(), text)
}

#[test]
fn config_layers_file_then_env_then_flags_and_redacts_secrets() {
    let dir = std::env::temp_dir().join(format!("innerloop-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("innerloop.toml");
    std::fs::write(&file, "port = 9001\ngrpc_port = 9002\nmax_iterations = 7\n").unwrap();
    let file = file.to_str().unwrap();
    let (ok, out) = config(
        &["--config", file, "config", "--grpc-port", "9100"],
        &[
            ("PORT", "9050"),
            ("API_BEARER_TOKENS", "tok-a,tok-b"),
            ("OPENAI_API_KEY", "sk-secret"),
        ],
    );
    assert!(ok, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["max_iterations"], 7, "file");
    assert_eq!(json["port"], 9050, "env over file");
    assert_eq!(json["grpc_port"], 9100, "flag over file");
    assert_eq!(json["api_bearer_tokens"], serde_json::json!(["***", "***"]));
    assert_eq!(json["openai_api_key"], "***");
    assert!(!out.contains("tok-a") && !out.contains("sk-secret"));
}

#[test]
fn invalid_settings_fail_at_start_and_name_the_setting() {
    let (ok, out) = config(&["config"], &[("MAX_ITERATIONS", "0")]);
    assert!(!ok);
    assert!(out.contains("MAX_ITERATIONS"), "{out}");
    let (ok, out) = config(&["config"], &[("PORT", "not-a-port")]);
    assert!(!ok);
    assert!(out.to_lowercase().contains("port"), "{out}");
}
