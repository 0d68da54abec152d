//! cx-conductor: a Kubernetes operator that conducts omnichannel customer-experience infrastructure.

// kube-derive expands several `printcolumn(...)` attributes that clippy sees as duplicates.
#![allow(clippy::duplicated_attributes)]

pub mod api;
pub mod cli;
pub mod collector;
pub mod core;
pub mod crd;
pub mod kpi;
pub mod manifest;
pub mod map;
pub mod operator;
pub mod schema;
pub mod themes;
