//! The client half of the `innerloop` binary: subcommands that talk gRPC to a running server
//! (`--server`, token from `INNERLOOP_TOKEN` or `--token-file`). Transport-side code like the
//! edge: it maps files and flags onto requests and answers onto text, and holds no domain rules.
//!
//! - [`jobfile`]: the YAML job file of `run`; [`examples_file`]: JSONL / CSV examples.
//! - [`connect`]: the channel and the bearer token; [`follow`]: watching a job with reconnects;
//!   [`progress`]: the progress line.

pub mod connect;
pub mod examples_file;
pub mod follow;
pub mod jobfile;
pub mod progress;

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;

use crate::domain::{JobResult, JobStatus};
use crate::edge::json::{JobList, JobState};
use crate::grpc::{convert, pb};
use connect::{Clients, ServerArgs};
use follow::{Display, Ending};

/// At most this many examples go in one `BulkUpsertExamples` call (the server's cap).
const IMPORT_CHUNK: usize = 1000;

/// The client subcommands (flattened into the binary's command list).
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Start a job from a job file (YAML: prompt, examples, metric, budget, mode); prints its id.
    Run(RunArgs),
    /// Follow a job's progress until it ends (Ctrl-C stops watching, not the job).
    Watch(WatchArgs),
    /// List jobs, newest first.
    Ls(LsArgs),
    /// Print a job's state as JSON.
    Get(JobArgs),
    /// Cancel a job.
    Cancel(JobArgs),
    /// Print a finished job's best prompt (or, with --json, the whole job and result).
    Result(ResultArgs),
    /// Manage the server's stored examples.
    #[command(subcommand)]
    Examples(ExamplesCommand),
    /// Score a prompt on a dataset (an eval job); prints its id, or the score with --wait.
    Eval(EvalArgs),
}

#[derive(clap::Args, Debug)]
pub struct FollowFlags {
    /// Print every event as a JSON line on stdout.
    #[arg(long)]
    events: bool,
    /// No progress output on stderr.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The job file.
    job_file: PathBuf,
    /// Follow the job until it ends; exit 0 finished, 1 failed, 2 cancelled.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    follow: FollowFlags,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    job_id: String,
    /// Start after this event id (default: replay from the start).
    #[arg(long, default_value_t = 0)]
    after: u64,
    #[command(flatten)]
    follow: FollowFlags,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// Only jobs in this state (repeatable).
    #[arg(long)]
    status: Vec<String>,
    /// At most this many jobs.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// The raw list as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args, Debug)]
pub struct JobArgs {
    job_id: String,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args, Debug)]
pub struct ResultArgs {
    job_id: String,
    /// The whole job state and result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Subcommand, Debug)]
pub enum ExamplesCommand {
    /// Upsert examples from a JSONL or CSV file (by id; a missing id gets a new one).
    Import {
        file: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The prompt to score.
    #[arg(long, conflicts_with = "prompt_file")]
    prompt: Option<String>,
    /// A file holding the prompt to score.
    #[arg(long)]
    prompt_file: Option<PathBuf>,
    /// A built-in pack (toy_qa, toy_clf) or `examples` (the stored examples, the default).
    #[arg(long)]
    dataset: Option<String>,
    /// Metric names (repeatable).
    #[arg(long)]
    metric: Vec<String>,
    /// At most this many examples.
    #[arg(long)]
    max_examples: Option<u32>,
    /// Follow the eval and print its score; exit codes as `run --wait`.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    follow: FollowFlags,
    #[command(flatten)]
    server: ServerArgs,
}

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
        ClientCommand::Cancel(args) => {
            let job = args
                .server
                .connect()?
                .jobs()
                .cancel_job(pb::CancelJobRequest {
                    job_id: args.job_id,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            println!("{} {}", job.job_id, status_name(job.status));
            Ok(0)
        }
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
        status.push(convert::status_to_pb(parsed) as i32);
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
        println!(
            "{}  {:<9}  {} ago",
            job.job_id,
            job.status,
            progress::human_duration(now - job.created_at)
        );
    }
    Ok(0)
}

async fn result(args: ResultArgs) -> anyhow::Result<i32> {
    let job = get_job(&args.server.connect()?, &args.job_id).await?;
    let status = convert::status_from_pb(job.status);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&JobState::from_pb(job))?);
        return Ok(0);
    }
    let Some(result) = job.result.and_then(convert::result_from_pb) else {
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
    convert::status_from_pb(raw)
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
