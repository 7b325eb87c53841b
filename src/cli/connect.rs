//! The client's connection to a server: one tonic channel, with the bearer token (from
//! `INNERLOOP_TOKEN` or `--token-file`) added to every call as `authorization` metadata.

use std::path::PathBuf;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::api::pb::eval_service_client::EvalServiceClient;
use crate::api::pb::examples_service_client::ExamplesServiceClient;
use crate::api::pb::job_service_client::JobServiceClient;
use crate::api::pb::optimizer_service_client::OptimizerServiceClient;
use crate::api::pb::workbench_service_client::WorkbenchServiceClient;

/// The environment variable holding the bearer token.
pub const TOKEN_ENV: &str = "INNERLOOP_TOKEN";

/// Where the server is and how to prove who we are.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// The server's gRPC address.
    #[arg(
        long,
        env = "INNERLOOP_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// A file holding the bearer token (else INNERLOOP_TOKEN).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

/// Adds `authorization: Bearer …` when a token is configured.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

type Authed = InterceptedService<Channel, Bearer>;

/// Clients of every service over one channel.
#[derive(Clone)]
pub struct Clients {
    channel: Channel,
    bearer: Bearer,
}

impl ServerArgs {
    fn token(&self) -> anyhow::Result<Option<String>> {
        let token = match &self.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            ),
            None => std::env::var(TOKEN_ENV).ok(),
        };
        Ok(token
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty()))
    }

    /// Connects lazily: the first call dials, and a broken connection is dialled again.
    pub fn connect(&self) -> anyhow::Result<Clients> {
        let endpoint = Endpoint::from_shared(self.server.clone())
            .map_err(|e| anyhow::anyhow!("--server {}: {e}", self.server))?
            .connect_timeout(std::time::Duration::from_secs(10));
        let bearer = match self.token()? {
            Some(token) => Some(
                format!("Bearer {token}")
                    .parse()
                    .map_err(|_| anyhow::anyhow!("the token must be visible ASCII"))?,
            ),
            None => None,
        };
        Ok(Clients {
            channel: endpoint.connect_lazy(),
            bearer: Bearer(bearer),
        })
    }
}

impl Clients {
    pub fn jobs(&self) -> JobServiceClient<Authed> {
        JobServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }
    pub fn optimizer(&self) -> OptimizerServiceClient<Authed> {
        OptimizerServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }
    pub fn examples(&self) -> ExamplesServiceClient<Authed> {
        ExamplesServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }
    pub fn eval(&self) -> EvalServiceClient<Authed> {
        EvalServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }
    pub fn workbench(&self) -> WorkbenchServiceClient<Authed> {
        WorkbenchServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }
}
