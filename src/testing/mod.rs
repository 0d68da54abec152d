//! Test support shipped with the library so integration tests and benches can share it.
//!
//! - [`apiserver`]: an in-process, stateful fake Kubernetes API server that a real
//!   `kube::Client` talks to over HTTP on 127.0.0.1.

pub mod apiserver;

pub use apiserver::{
    ApiFailure, FakeApiServer, FakeApiServerBuilder, Fault, FaultRule, RequestRecord, ResourceKind,
};
