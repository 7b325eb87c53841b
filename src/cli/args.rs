//! The client subcommands' grammar: their arguments and flags (clap). What each one does is in
//! [`super::run`].

use std::path::PathBuf;

use clap::Subcommand;

use super::connect::ServerArgs;

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
    /// Pause a running GEPA job at its next safe point (it keeps its checkpoint).
    Pause(JobArgs),
    /// Resume a paused job from its checkpoint.
    Resume(JobArgs),
    /// Give a running or paused GEPA job feedback for its next reflections, and/or a
    /// hand-written candidate for its pool.
    Steer(SteerArgs),
    /// Start a new job from one of a job's candidates (default: its best) or its checkpoint,
    /// with changed settings; prints its id.
    Branch(BranchArgs),
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
    pub(super) events: bool,
    /// No progress output on stderr.
    #[arg(long, short)]
    pub(super) quiet: bool,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The job file.
    pub(super) job_file: PathBuf,
    /// Follow the job until it ends; exit 0 finished, 1 failed, 2 cancelled.
    #[arg(long)]
    pub(super) wait: bool,
    #[command(flatten)]
    pub(super) follow: FollowFlags,
    #[command(flatten)]
    pub(super) server: ServerArgs,
}

#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    pub(super) job_id: String,
    /// Start after this event id (default: replay from the start).
    #[arg(long, default_value_t = 0)]
    pub(super) after: u64,
    #[command(flatten)]
    pub(super) follow: FollowFlags,
    #[command(flatten)]
    pub(super) server: ServerArgs,
}

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// Only jobs in this state (repeatable).
    #[arg(long)]
    pub(super) status: Vec<String>,
    /// At most this many jobs.
    #[arg(long, default_value_t = 50)]
    pub(super) limit: u32,
    /// The raw list as JSON.
    #[arg(long)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(super) server: ServerArgs,
}

#[derive(clap::Args, Debug)]
pub struct JobArgs {
    pub(super) job_id: String,
    #[command(flatten)]
    pub(super) server: ServerArgs,
}

#[derive(clap::Args, Debug)]
pub struct ResultArgs {
    pub(super) job_id: String,
    /// The whole job state and result as JSON.
    #[arg(long)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(super) server: ServerArgs,
}

#[derive(clap::Args, Debug)]
pub struct SteerArgs {
    pub(super) job_id: String,
    /// Feedback the next reflections receive.
    #[arg(long)]
    pub(super) feedback: Option<String>,
    /// The component the feedback (or the candidate text) is about (default: system_prompt for
    /// a candidate, every component for feedback).
    #[arg(long)]
    pub(super) component: Option<String>,
    /// A file holding a hand-written text for the component: added as a candidate.
    #[arg(long)]
    pub(super) candidate_file: Option<PathBuf>,
    /// The candidate's parent (default 0, the seed).
    #[arg(long, default_value_t = 0)]
    pub(super) parent: u32,
    #[command(flatten)]
    pub(super) server: ServerArgs,
}

#[derive(clap::Args, Debug)]
pub struct BranchArgs {
    pub(super) job_id: String,
    /// Seed the new job with this candidate (default: the best).
    #[arg(long, conflicts_with = "from_checkpoint")]
    pub(super) candidate: Option<u32>,
    /// Continue the job's search from its checkpoint (budget spent included).
    #[arg(long)]
    pub(super) from_checkpoint: bool,
    /// New metric-call budget.
    #[arg(long)]
    pub(super) max_rollouts: Option<u64>,
    /// New spending limit in USD.
    #[arg(long)]
    pub(super) max_cost: Option<f64>,
    /// New minibatch size.
    #[arg(long)]
    pub(super) minibatch: Option<u32>,
    /// New candidate selector: pareto, current_best or epsilon_greedy.
    #[arg(long)]
    pub(super) selector: Option<String>,
    /// New examples (JSONL or CSV) instead of the job's.
    #[arg(long)]
    pub(super) examples: Option<PathBuf>,
    /// Follow the new job until it ends; exit codes as `run --wait`.
    #[arg(long)]
    pub(super) wait: bool,
    #[command(flatten)]
    pub(super) follow: FollowFlags,
    #[command(flatten)]
    pub(super) server: ServerArgs,
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
    pub(super) prompt: Option<String>,
    /// A file holding the prompt to score.
    #[arg(long)]
    pub(super) prompt_file: Option<PathBuf>,
    /// A built-in pack (toy_qa, toy_clf) or `examples` (the stored examples, the default).
    #[arg(long)]
    pub(super) dataset: Option<String>,
    /// Metric names (repeatable).
    #[arg(long)]
    pub(super) metric: Vec<String>,
    /// At most this many examples.
    #[arg(long)]
    pub(super) max_examples: Option<u32>,
    /// Follow the eval and print its score; exit codes as `run --wait`.
    #[arg(long)]
    pub(super) wait: bool,
    #[command(flatten)]
    pub(super) follow: FollowFlags,
    #[command(flatten)]
    pub(super) server: ServerArgs,
}
