//! The edge's connection to the gRPC core. One type, [`Upstream`], whatever carries the calls:
//! the in-process tonic [`Routes`](tonic::service::Routes) (`innerloop serve`: no TCP hop, no
//! HTTP/2 framing) or a [`Channel`](tonic::transport::Channel) to a remote core
//! (`innerloop edge --upstream URL`). Handlers only see the generated tonic clients.

use std::convert::Infallible;

use tonic::body::Body;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use crate::api::pb::job_service_client::JobServiceClient;
use crate::api::pb::optimizer_service_client::OptimizerServiceClient;

/// A failure of the transport under the clients (a concrete type: a bare boxed error trips
/// the compiler's `Send` inference in the handlers).
#[derive(Debug)]
pub struct TransportError(pub Box<dyn std::error::Error + Send + Sync + 'static>);

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Any gRPC transport, boxed so the edge code is the same for every deployment.
pub type GrpcTransport =
    BoxCloneSyncService<http::Request<Body>, http::Response<Body>, TransportError>;

/// The tonic clients of the core. Cheap to clone (clone per request, as tonic advises).
#[derive(Clone)]
pub struct Upstream {
    transport: GrpcTransport,
}

impl Upstream {
    /// Calls the core's routes in this process: requests go straight into the tonic services.
    pub fn in_process(routes: tonic::service::Routes) -> Upstream {
        let service = tower::ServiceExt::<http::Request<Body>>::map_err(
            routes,
            |never: Infallible| -> TransportError { match never {} },
        );
        Upstream::from_service(service)
    }

    /// Calls a remote core over a tonic channel.
    pub fn channel(channel: tonic::transport::Channel) -> Upstream {
        Upstream::from_service(channel.map_err(|err| TransportError(Box::new(err))))
    }

    /// Connects lazily to `url` (`http://host:port`); the first call dials.
    pub fn connect_lazy(url: &str) -> Result<Upstream, tonic::transport::Error> {
        let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())?
            .http2_keep_alive_interval(std::time::Duration::from_secs(30))
            .keep_alive_while_idle(true);
        Ok(Upstream::channel(endpoint.connect_lazy()))
    }

    /// Any service that speaks gRPC over `tonic::body::Body` (tests wrap the routes with probes).
    pub fn from_service<S>(service: S) -> Upstream
    where
        S: tower::Service<
                http::Request<Body>,
                Response = http::Response<Body>,
                Error = TransportError,
            > + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        Upstream {
            transport: BoxCloneSyncService::new(service),
        }
    }

    pub fn jobs(&self) -> JobServiceClient<GrpcTransport> {
        JobServiceClient::new(self.transport.clone())
    }

    pub fn optimizer(&self) -> OptimizerServiceClient<GrpcTransport> {
        OptimizerServiceClient::new(self.transport.clone())
    }

    pub fn examples(
        &self,
    ) -> crate::api::pb::examples_service_client::ExamplesServiceClient<GrpcTransport> {
        crate::api::pb::examples_service_client::ExamplesServiceClient::new(self.transport.clone())
    }

    pub fn eval(&self) -> crate::api::pb::eval_service_client::EvalServiceClient<GrpcTransport> {
        crate::api::pb::eval_service_client::EvalServiceClient::new(self.transport.clone())
    }

    pub fn workbench(
        &self,
    ) -> crate::api::pb::workbench_service_client::WorkbenchServiceClient<GrpcTransport> {
        crate::api::pb::workbench_service_client::WorkbenchServiceClient::new(
            self.transport.clone(),
        )
    }

    pub fn health(&self) -> tonic_health::pb::health_client::HealthClient<GrpcTransport> {
        tonic_health::pb::health_client::HealthClient::new(self.transport.clone())
    }
}
