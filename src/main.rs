//! The `innerloop` command: `serve` runs the service (gRPC core + REST/SSE edge), `edge` runs
//! the edge alone in front of a remote core, `config` prints the effective settings.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use figment::Figment;
use figment::providers::Serialized;
use innerloop::config::Settings;
use innerloop::server;

/// mimalloc instead of glibc's malloc: the event path allocates on job tasks and frees on the
/// writer and SQLite's worker thread, and glibc serialises such cross-thread frees on arena
/// locks (measured in `benches/store_throughput.rs`: +80 % events/s on SQLite, +20 % on memory;
/// see docs/durability.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "innerloop",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("INNERLOOP_COMMIT"), ")"),
    about = "GEPA prompt-optimization service"
)]
struct Cli {
    /// Settings file (TOML); defaults to ./innerloop.toml when present.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// Flags that override every other layer.
#[derive(clap::Args, Default)]
struct Overrides {
    /// HTTP bind host (HOST).
    #[arg(long)]
    host: Option<String>,
    /// HTTP port (PORT).
    #[arg(long)]
    port: Option<u16>,
    /// gRPC bind host (GRPC_HOST).
    #[arg(long)]
    grpc_host: Option<String>,
    /// gRPC port (GRPC_PORT).
    #[arg(long)]
    grpc_port: Option<u16>,
    /// memory | sqlite | postgres (JOB_STORE).
    #[arg(long)]
    job_store: Option<String>,
    /// Data directory (DATA_DIR).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Development mode: authentication off.
    #[arg(long)]
    dev: bool,
}

impl Overrides {
    fn figment(&self) -> Figment {
        let mut f = Figment::new();
        if let Some(v) = &self.host {
            f = f.merge(Serialized::default("host", v));
        }
        if let Some(v) = self.port {
            f = f.merge(Serialized::default("port", v));
        }
        if let Some(v) = &self.grpc_host {
            f = f.merge(Serialized::default("grpc_host", v));
        }
        if let Some(v) = self.grpc_port {
            f = f.merge(Serialized::default("grpc_port", v));
        }
        if let Some(v) = &self.job_store {
            f = f.merge(Serialized::default("job_store", v));
        }
        if let Some(v) = &self.data_dir {
            f = f.merge(Serialized::default("data_dir", v));
        }
        if self.dev {
            f = f
                .merge(Serialized::default("require_auth", false))
                .merge(Serialized::default("dev_mode", true));
        }
        f
    }
}

/// `innerloop edge` arguments.
#[derive(clap::Args)]
struct EdgeArgs {
    /// The core's gRPC address, e.g. http://127.0.0.1:50051.
    #[arg(long)]
    upstream: String,
    #[command(flatten)]
    overrides: Overrides,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: gRPC core (GRPC_HOST:GRPC_PORT) and REST + SSE edge (HOST:PORT).
    Serve(Overrides),
    /// Run the REST + SSE edge alone (HOST:PORT) in front of a remote core.
    Edge(EdgeArgs),
    /// Print the effective configuration, secrets redacted.
    Config(Overrides),
    #[command(flatten)]
    Client(innerloop::cli::ClientCommand),
}

/// The settings, or — on a bad one — one line naming it on stderr and exit code 2 (a usage
/// error, as for bad flags; no backtrace).
fn load_settings(file: Option<&std::path::Path>, overrides: Figment) -> Settings {
    match Settings::load(file, overrides) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("innerloop: {err}");
            std::process::exit(2);
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(overrides) => {
            let settings = Arc::new(load_settings(cli.config.as_deref(), overrides.figment()));
            let telemetry = innerloop::telemetry::init_with_otel(&settings.telemetry());
            let listeners = server::Listeners::bind(&settings).await?;
            let outcome = server::run(settings, listeners, server::shutdown_signal()).await;
            telemetry.shutdown().await;
            outcome
        }
        Command::Edge(args) => {
            let settings = Arc::new(load_settings(
                cli.config.as_deref(),
                args.overrides.figment(),
            ));
            innerloop::telemetry::init(&settings.telemetry());
            let http =
                tokio::net::TcpListener::bind((settings.host.as_str(), settings.port)).await?;
            server::run_edge(settings, http, &args.upstream, server::shutdown_signal()).await
        }
        Command::Config(overrides) => {
            let settings = load_settings(cli.config.as_deref(), overrides.figment());
            println!("{}", serde_json::to_string_pretty(&settings.redacted())?);
            Ok(())
        }
        Command::Client(command) => {
            let code = innerloop::cli::run(command).await?;
            use std::io::Write as _;
            let _ = std::io::stdout().flush();
            std::process::exit(code)
        }
    }
}
