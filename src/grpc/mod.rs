//! The tonic core: generated protobuf types ([`pb`]), the one boundary where wire types meet
//! domain types ([`convert`]), and the services, each a few lines over [`JobRuntime`].

pub mod convert;
pub mod convert_gepa;
mod services;
mod services_gepa;
pub mod workbench;

pub use services::{JobServiceImpl, OptimizerServiceImpl, router};
pub use services_gepa::{EvalServiceImpl, ExamplesServiceImpl};

/// Generated protobuf and tonic code for `innerloop.v1`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("innerloop.v1");

    /// Encoded `FileDescriptorSet` of every proto, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("innerloop_descriptor");
}
