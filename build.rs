//! Compiles `proto/` with protox (no system `protoc`) and tonic-prost-build, and writes the encoded
//! descriptor set that server reflection serves; exports the git commit (`INNERLOOP_COMMIT`)
//! for `innerloop --version`.
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut protos = Vec::new();
    for entry in fs::read_dir("proto/innerloop/v1")? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "proto") {
            println!("cargo:rerun-if-changed={}", path.display());
            protos.push(path);
        }
    }
    protos.sort();
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");

    commit_env();

    let fds = protox::compile(&protos, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out.join("innerloop_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    json_contract(tonic_prost_build::configure())
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}

/// Event payloads, results and lineages as REST and SSE clients read them: the JSON contract is the serde
/// rendering of these wire types (`crate::api::json` renders it; `crate::api::round_trip`
/// checks every payload against the stored text). Field order is the proto's declaration order.
const JSON_MESSAGES: &[&str] = &[
    // results.proto
    "Scores",
    "JobResult",
    "FrontierEntry",
    "BudgetUsage",
    "CandidateInfo",
    "GepaResult",
    "ProposalCost",
    "ProposalVerdict",
    "TestReport",
    "EvalCase",
    "EvalResult",
    "DefaultResult",
    "ErrorResult",
    // events.proto: every `JobEvent` payload
    "Started",
    "Mutation",
    "Progress",
    "Selected",
    "EarlyStop",
    "Finished",
    "Failed",
    "Cancelled",
    "Shutdown",
    "Paused",
    "Resumed",
    "Suspended",
    "GenerationStarted",
    "ParentSelected",
    "MinibatchEvaluated",
    "ReflectionStarted",
    "ReflectionFinished",
    "CandidateProposed",
    "CandidateVerdict",
    "CandidateScored",
    "JudgeScored",
    "FrontierUpdated",
    "LessonsUpdated",
    "MergeAttempted",
    "EvalStarted",
    "EvalFinished",
    // workbench.proto: a job's lineage (`GET /v1/optimize/{job_id}/candidates`)
    "RejectedProposal",
    "BranchedFrom",
];

/// Maps rendered in key order, so the same result is always the same bytes (as stored).
const JSON_SORTED_MAPS: &[&str] = &[
    "Scores.judge",
    "CandidateInfo.components",
    "CandidateInfo.val_scores",
    "GepaResult.best_candidate",
    "CandidateScored.val_scores",
];

/// Per-field rules of the contract: fields left out when empty, and message fields a client
/// always sees (an unset one renders as its default, never `null`).
const JSON_FIELDS: &[(&str, &str)] = &[
    ("Scores.brevity", SKIP_NONE),
    ("Scores.diversity", SKIP_NONE),
    ("Scores.coverage", SKIP_NONE),
    ("GepaResult.error", SKIP_NONE),
    ("GepaResult.test", SKIP_NONE),
    ("Failed.message", SKIP_EMPTY_TEXT),
    ("Shutdown.reason", SKIP_EMPTY_TEXT),
    ("ReflectionStarted.feedback", SKIP_EMPTY_LIST),
    ("BranchedFrom.candidate_id", SKIP_NONE),
    ("Progress.scores", OR_DEFAULT),
    ("Selected.scores", OR_DEFAULT),
    ("DefaultResult.scores", OR_DEFAULT),
    ("GepaResult.budget", OR_DEFAULT),
    ("GenerationStarted.budget", OR_DEFAULT),
    ("CandidateVerdict.cost", OR_DEFAULT),
    ("ProposalVerdict.cost", OR_DEFAULT),
];
const SKIP_NONE: &str = r#"#[serde(skip_serializing_if = "Option::is_none")]"#;
const SKIP_EMPTY_TEXT: &str = r#"#[serde(skip_serializing_if = "String::is_empty")]"#;
const SKIP_EMPTY_LIST: &str = r#"#[serde(skip_serializing_if = "Vec::is_empty")]"#;
const OR_DEFAULT: &str = r#"#[serde(serialize_with = "crate::api::json::or_default")]"#;

fn json_contract(mut builder: tonic_prost_build::Builder) -> tonic_prost_build::Builder {
    let path = |name: &str| format!(".innerloop.v1.{name}");
    for name in JSON_MESSAGES {
        builder = builder.message_attribute(path(name), "#[derive(serde::Serialize)]");
    }
    // A result and a `finished` event render as the result itself (untagged, as the original).
    for name in ["JobResult", "Finished"] {
        builder = builder.message_attribute(path(name), "#[serde(transparent)]");
    }
    // The oneofs render as the message they hold: a payload is its `data` object.
    for oneof in ["JobResult.kind", "JobEvent.payload"] {
        builder = builder.type_attribute(
            path(oneof),
            "#[derive(serde::Serialize)] #[serde(untagged)]",
        );
    }
    for map in JSON_SORTED_MAPS {
        builder = builder.btree_map(path(map));
    }
    for (field, attribute) in JSON_FIELDS {
        builder = builder.field_attribute(path(field), attribute);
    }
    builder
}

/// `INNERLOOP_COMMIT`: the short commit hash of the checkout, `unknown` outside git (a source
/// tarball). Rebuilt when HEAD or the branch it points to moves.
fn commit_env() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .filter(|text| !text.is_empty())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=INNERLOOP_COMMIT={commit}");
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for path in watched {
        // Only files that exist: a missing one (no `packed-refs` yet) would rerun this script,
        // and rebuild the crate, on every build.
        if let Some(file) = git(&["rev-parse", "--git-path", &path])
            && std::path::Path::new(&file).exists()
        {
            println!("cargo:rerun-if-changed={file}");
        }
    }
}
