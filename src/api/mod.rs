//! The `cx.conductor.dev/v1alpha1` API: where every field of every custom resource is defined.

pub mod channel;
pub mod common;
pub mod journey;
pub mod kpi;
pub mod theme;
pub mod touchpoint;

pub use channel::*;
pub use common::*;
pub use journey::*;
pub use kpi::*;
pub use theme::*;
pub use touchpoint::*;
