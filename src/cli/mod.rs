//! The client half of the `innerloop` binary: subcommands that talk gRPC to a running server
//! (`--server`, token from `INNERLOOP_TOKEN` or `--token-file`). Transport-side code like the
//! edge: it maps files and flags onto requests and answers onto text, and holds no domain rules.
//!
//! - `args.rs`: the subcommands' arguments and flags ([`ClientCommand`]); this file runs them.
//! - [`jobfile`]: the YAML job file of `run`; [`examples_file`]: JSONL / CSV examples.
//! - [`connect`]: the channel and the bearer token; [`follow`]: watching a job with reconnects;
//!   [`progress`]: the progress line.

mod args;
pub mod connect;
pub mod examples_file;
pub mod follow;
pub mod jobfile;
pub mod progress;

use std::io::Write;

use crate::api::rest::{JobList, JobState};
use crate::api::{jobs, pb};
use crate::domain::{JobResult, JobStatus};
pub use args::*;
use connect::Clients;
use follow::{Display, Ending};

/// At most this many examples go in one `BulkUpsertExamples` call (the server's cap).
const IMPORT_CHUNK: usize = 1000;

/// Runs a client subcommand; returns the process exit code.
pub async fn run(command: ClientCommand) -> anyhow::Result<i32> {
    match command {
        ClientCommand::Run(args) => {
            let request = jobfile::JobFile::load(&args.job_file)?.into_request(&args.job_file)?;
            let clients = args.server.connect()?;
            let created = clients
                .optimizer()
                .create_job(request)
                .await
                .map_err(status_error)?
                .into_inner();
            println!("{}", created.job_id);
            flush();
            if !args.wait {
                return Ok(0);
            }
            follow_to_exit(&clients, &created.job_id, 0, &args.follow).await
        }
        ClientCommand::Watch(args) => {
            let clients = args.server.connect()?;
            follow_to_exit(&clients, &args.job_id, args.after, &args.follow).await
        }
        ClientCommand::Ls(args) => ls(args).await,
        ClientCommand::Get(args) => {
            let job = get_job(&args.server.connect()?, &args.job_id).await?;
            println!("{}", serde_json::to_string_pretty(&JobState::from_pb(job))?);
            Ok(0)
        }
        ClientCommand::Cancel(args) => lifecycle(args, Lifecycle::Cancel).await,
        ClientCommand::Pause(args) => lifecycle(args, Lifecycle::Pause).await,
        ClientCommand::Resume(args) => lifecycle(args, Lifecycle::Resume).await,
        ClientCommand::Steer(args) => steer(args).await,
        ClientCommand::Branch(args) => branch(args).await,
        ClientCommand::Result(args) => result(args).await,
        ClientCommand::Examples(ExamplesCommand::Import { file, server }) => {
            let examples = jobfile::read_examples(&file)?;
            let clients = server.connect()?;
            let mut imported = 0u64;
            let mut examples = examples.into_iter().map(|e| e.into_pb()).peekable();
            while examples.peek().is_some() {
                let chunk: Vec<pb::Example> = examples.by_ref().take(IMPORT_CHUNK).collect();
                let answer = clients
                    .examples()
                    .bulk_upsert_examples(pb::BulkUpsertExamplesRequest { examples: chunk })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                imported += u64::from(answer.upserted);
            }
            println!("imported {imported} examples");
            Ok(0)
        }
        ClientCommand::Eval(args) => eval(args).await,
    }
}

/// The three lifecycle commands: one RPC on one job, then `<job id> <status>`.
enum Lifecycle {
    Cancel,
    Pause,
    Resume,
}

async fn lifecycle(args: JobArgs, action: Lifecycle) -> anyhow::Result<i32> {
    let mut jobs = args.server.connect()?.jobs();
    let job_id = args.job_id;
    let job = match action {
        Lifecycle::Cancel => jobs.cancel_job(pb::CancelJobRequest { job_id }).await,
        Lifecycle::Pause => jobs.pause_job(pb::PauseJobRequest { job_id }).await,
        Lifecycle::Resume => jobs.resume_job(pb::ResumeJobRequest { job_id }).await,
    }
    .map_err(status_error)?
    .into_inner();
    println!("{} {}", job.job_id, status_name(job.status));
    Ok(0)
}

async fn follow_to_exit(
    clients: &Clients,
    job_id: &str,
    after: u64,
    flags: &FollowFlags,
) -> anyhow::Result<i32> {
    let display = Display::detect(flags.events, flags.quiet);
    match follow::follow(clients, job_id, after, display).await? {
        Ending::Terminal(status, _) => Ok(follow::exit_code(status)),
        Ending::Detached(_) => Ok(130),
    }
}

async fn ls(args: LsArgs) -> anyhow::Result<i32> {
    let mut status = Vec::new();
    for name in &args.status {
        let parsed = JobStatus::parse(name)
            .ok_or_else(|| anyhow::anyhow!("--status {name}: not a job status"))?;
        status.push(pb::JobStatus::from(parsed) as i32);
    }
    let list = args
        .server
        .connect()?
        .jobs()
        .list_jobs(pb::ListJobsRequest {
            page_size: args.limit,
            page_token: String::new(),
            status,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let list = JobList::from_pb(list);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(0);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    for job in list.jobs {
        let (best, calls, cost) = match &job.progress {
            Some(p) => (
                p.best_score
                    .map(|b| format!("{b:.3}"))
                    .unwrap_or_else(|| "-".into()),
                match p.metric_calls_budget {
                    Some(budget) => format!("{}/{budget}", p.metric_calls_used),
                    None => p.metric_calls_used.to_string(),
                },
                format!("${:.4}", p.cost_usd),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "{}  {:<9}  best {best:<5}  calls {calls:<9}  cost {cost}  {} ago",
            job.job_id,
            job.status,
            progress::human_duration(now - job.created_at)
        );
    }
    Ok(0)
}

async fn steer(args: SteerArgs) -> anyhow::Result<i32> {
    let candidate = match &args.candidate_file {
        Some(path) => {
            let text = jobfile::read_bounded(path, 1024 * 1024)?;
            let component = args
                .component
                .clone()
                .unwrap_or_else(|| "system_prompt".to_string());
            Some(pb::HumanCandidate {
                parent_id: args.parent,
                components: [(component, text)].into_iter().collect(),
            })
        }
        None => None,
    };
    let answer = args
        .server
        .connect()?
        .workbench()
        .steer_job(pb::SteerJobRequest {
            job_id: args.job_id,
            feedback: args.feedback.unwrap_or_default(),
            component: args.component.unwrap_or_default(),
            candidate,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let mut queued = Vec::new();
    if answer.feedback_queued {
        queued.push("feedback");
    }
    if answer.candidate_queued {
        queued.push("candidate");
    }
    println!("{} queued {}", answer.job_id, queued.join(" and "));
    Ok(0)
}

async fn branch(args: BranchArgs) -> anyhow::Result<i32> {
    let examples = match &args.examples {
        Some(path) => jobfile::read_examples(path)?
            .into_iter()
            .map(|e| e.into_pb())
            .collect(),
        None => Vec::new(),
    };
    let budget = (args.max_rollouts.is_some() || args.max_cost.is_some()).then(|| pb::Budget {
        max_rollouts: args.max_rollouts,
        max_cost: args.max_cost,
        ..Default::default()
    });
    let gepa = (args.minibatch.is_some() || args.selector.is_some()).then(|| pb::GepaOptions {
        minibatch_size: args.minibatch,
        candidate_selector: args.selector.clone().unwrap_or_default(),
        ..Default::default()
    });
    let clients = args.server.connect()?;
    let created = clients
        .workbench()
        .branch_job(pb::BranchJobRequest {
            job_id: args.job_id,
            candidate_id: args.candidate,
            from_checkpoint: args.from_checkpoint,
            budget,
            gepa,
            examples,
            ..Default::default()
        })
        .await
        .map_err(status_error)?
        .into_inner();
    println!("{}", created.job_id);
    flush();
    if !args.wait {
        return Ok(0);
    }
    follow_to_exit(&clients, &created.job_id, 0, &args.follow).await
}

async fn result(args: ResultArgs) -> anyhow::Result<i32> {
    let job = get_job(&args.server.connect()?, &args.job_id).await?;
    let status = jobs::job_status(job.status);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&JobState::from_pb(job))?);
        return Ok(0);
    }
    let Some(result) = job.result.and_then(|r| JobResult::try_from(r).ok()) else {
        let name = status.map(JobStatus::as_str).unwrap_or("unknown");
        anyhow::bail!("job {} has no result (it is {name})", args.job_id);
    };
    match result {
        JobResult::Gepa(g) => println!("{}", g.best_prompt),
        JobResult::Default(d) => println!("{}", d.proposal),
        JobResult::Eval(e) => println!("{}", e.score),
        JobResult::Error(e) => anyhow::bail!("job {} failed: {}", args.job_id, e.error),
    }
    Ok(0)
}

async fn eval(args: EvalArgs) -> anyhow::Result<i32> {
    let prompt = match (args.prompt, &args.prompt_file) {
        (Some(p), _) => p,
        (None, Some(path)) => jobfile::read_bounded(path, 1024 * 1024)?,
        (None, None) => String::new(),
    };
    let clients = args.server.connect()?;
    let created = clients
        .eval()
        .start_eval(pb::StartEvalRequest {
            name: args.dataset,
            max_examples: args.max_examples,
            prompt,
            metrics: args.metric,
            ..Default::default()
        })
        .await
        .map_err(status_error)?
        .into_inner();
    if !args.wait {
        println!("{}", created.job_id);
        return Ok(0);
    }
    let display = Display::detect(args.follow.events, args.follow.quiet);
    match follow::follow(&clients, &created.job_id, 0, display).await? {
        Ending::Terminal(status, progress) => {
            if status == JobStatus::Finished
                && let Some(score) = progress.best_score
            {
                println!("{score}");
            }
            Ok(follow::exit_code(status))
        }
        Ending::Detached(_) => Ok(130),
    }
}

async fn get_job(clients: &Clients, job_id: &str) -> anyhow::Result<pb::Job> {
    Ok(clients
        .jobs()
        .get_job(pb::GetJobRequest {
            job_id: job_id.to_string(),
        })
        .await
        .map_err(status_error)?
        .into_inner())
}

fn status_name(raw: i32) -> &'static str {
    jobs::job_status(raw)
        .map(JobStatus::as_str)
        .unwrap_or("unknown")
}

/// A failed call as the user should read it: the server's message and its code.
fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{} ({:?})", status.message(), status.code())
}

fn flush() {
    let _ = std::io::stdout().flush();
}
