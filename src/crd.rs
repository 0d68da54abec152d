//! The CustomResourceDefinitions generated from the API types: the single source of `crds/`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::CustomResourceExt;

use crate::api::{Channel, CustomerJourney, ExperienceKPI, Touchpoint};

/// Every CRD of the project, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        Channel::crd(),
        Touchpoint::crd(),
        ExperienceKPI::crd(),
        CustomerJourney::crd(),
    ];
    let names = [
        "Name of the Channel: at most 63 lower-case letters, digits and '-' (a label value touchpoints name in spec.channel).",
        "Name of the Touchpoint: a valid Service name of at most 53 characters (lower-case letters, digits and '-', starting with a letter); its collector's objects are named collector-<name>.",
        "Name of the ExperienceKPI: at most 63 characters (a label value of its metrics and alerts).",
        "Name of the CustomerJourney: at most 63 characters (a label value of its metrics and alerts).",
    ];
    for (crd, name) in crds.iter_mut().zip(names) {
        declare_metadata_name(crd, name);
    }
    crds
}

/// Declares `metadata.name` in the root schema, so the name rules can say
/// `fieldPath: .metadata.name` and the API server's refusal names the field
/// (`metadata.name: Invalid value: ...`) instead of `<nil>`. A CRD may describe nothing of
/// `metadata` but `name` and `generateName`: `metadata` itself gets no description.
fn declare_metadata_name(crd: &mut CustomResourceDefinition, description: &str) {
    for version in &mut crd.spec.versions {
        let Some(root) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        let name = JSONSchemaProps {
            type_: Some("string".into()),
            description: Some(description.into()),
            ..Default::default()
        };
        root.properties.get_or_insert_with(Default::default).insert(
            "metadata".into(),
            JSONSchemaProps {
                type_: Some("object".into()),
                properties: Some([("name".to_string(), name)].into()),
                ..Default::default()
            },
        );
    }
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
