//! The CustomResourceDefinitions generated from the API types: the single source of `crds/`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::api::{Channel, CustomerJourney, ExperienceKPI, Touchpoint};

/// Every CRD of the project, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        Channel::crd(),
        Touchpoint::crd(),
        ExperienceKPI::crd(),
        CustomerJourney::crd(),
    ]
}

/// All CRDs as one multi-document YAML, exactly as `crds/` holds them.
pub fn to_yaml() -> String {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd).expect("a CRD always serializes to YAML"));
    }
    out
}
