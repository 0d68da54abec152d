//! The touchpoint collector (`cx-conductor collector`): HTTP ingest of feedback events.

pub mod config;
