//! The conductor's pure core: from plain objects to conclusions and deployment plans. The same
//! functions serve `cx-conductor check` and the controllers; nothing here talks to a cluster.

pub mod analysis;
pub mod consistency;
pub mod findings;
pub mod listening;
pub mod objects;
pub mod plan;
pub mod pool;
pub mod readiness;
pub mod selector;
pub mod self_assessment;
pub mod world;

pub use analysis::{Analysis, JourneyAssessment, analyze, assess_journey};
pub use findings::{Finding, FindingCode, ObjectRef, Origin};
pub use world::World;
