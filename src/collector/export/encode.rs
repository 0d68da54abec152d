//! Events as OpenTelemetry log records, with the OpenTelemetry project's own protobuf types
//! (`opentelemetry-proto`). Pure: the same event, touchpoint and clock give the same record.
//!
//! # The log record of an event
//!
//! - `eventName` (and the `event.name` attribute, for consumers that predate the field):
//!   `cx.feedback.survey` or `cx.feedback.interaction`;
//! - body: the comment, a string, byte for byte as the customer wrote it; no body when there is
//!   none or when the touchpoint keeps comments in the cluster (`comments: false`);
//! - `timeUnixNano`: the event's `timestamp` when it has one; `observedTimeUnixNano`: when the
//!   collector accepted it; severity `INFO`;
//! - attributes, OpenTelemetry semantic conventions where one applies and `cx.*` otherwise:
//!
//! | attribute | value |
//! |---|---|
//! | `cx.touchpoint`, `cx.channel`, `cx.journey.stage` | the touchpoint, its channel and stage |
//! | `cx.event.kind` | `survey` or `interaction` |
//! | `cx.event.id` | the producer's `eventId` (or the one the collector assigned) |
//! | `cx.survey.metric`, `cx.survey.score`, `cx.survey.segment` | `nps`, 0–10 (an integer), `detractor`... |
//! | `cx.interaction.outcome`, `cx.interaction.wait_seconds`, `cx.interaction.handle_seconds` | the outcome, the timings (doubles) |
//! | `cx.themes` | the declared themes the comment mentions (an array of strings) |
//! | `cx.comment.language` | the comment's BCP 47 tag |
//! | `user.hash`, `cx.session.hash` | HMAC-SHA256 of `customerId` / `sessionId` with the pseudonym key, hex |
//! | `user.id`, `session.id` | the same, as sent, only with `rawIdentifiers: true` |
//!
//! The resource names the collector: `service.name` `cx-conductor-collector`, `service.version`,
//! `service.instance.id` and `k8s.pod.name` (the pod's name), `k8s.namespace.name`, and
//! `cx.collector.kind` (`pool` or `dedicated`); the scope is `cx-conductor` at its version.

use hmac::{Hmac, Mac};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use sha2::Sha256;

use crate::collector::event::{Event, EventSchema, Signal};
use crate::collector::metrics::survey_segment;

/// Event name of a survey answer.
pub const SURVEY_EVENT_NAME: &str = "cx.feedback.survey";
/// Event name of an interaction.
pub const INTERACTION_EVENT_NAME: &str = "cx.feedback.interaction";
/// `service.name` of every collector.
pub const SERVICE_NAME: &str = "cx-conductor-collector";

/// What a touchpoint adds to each of its records, computed once per configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordContext {
    /// `cx.touchpoint`, `cx.channel` and `cx.journey.stage`.
    pub identity: Vec<KeyValue>,
    /// Whether the comment becomes the body.
    pub comments: bool,
    /// How `customerId` and `sessionId` leave the cluster.
    pub identifiers: Identifiers,
}

/// How `customerId` and `sessionId` are exported.
#[derive(Clone, PartialEq, Eq)]
pub enum Identifiers {
    /// Not at all (no pseudonym key, raw export off).
    Dropped,
    /// As HMAC-SHA256 with this key, hex: stable across pods sharing the key, not reversible
    /// without it.
    Pseudonymised(Vec<u8>),
    /// As sent.
    Raw,
}

impl std::fmt::Debug for Identifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret.
        f.write_str(match self {
            Identifiers::Dropped => "Dropped",
            Identifiers::Pseudonymised(_) => "Pseudonymised(..)",
            Identifiers::Raw => "Raw",
        })
    }
}

impl RecordContext {
    /// The context of a touchpoint.
    pub fn new(
        touchpoint: &str,
        channel: &str,
        stage: &str,
        comments: bool,
        identifiers: Identifiers,
    ) -> RecordContext {
        RecordContext {
            identity: vec![
                string("cx.touchpoint", touchpoint),
                string("cx.channel", channel),
                string("cx.journey.stage", stage),
            ],
            comments,
            identifiers,
        }
    }
}

/// The log record of an accepted event. `themes` are the names of the declared themes its
/// comment mentions; `observed_unix_nano` is when the collector accepted it.
pub fn log_record(
    event: &Event<'_>,
    schema: &EventSchema,
    themes: &[&str],
    context: &RecordContext,
    observed_unix_nano: u64,
) -> LogRecord {
    let mut attributes = Vec::with_capacity(context.identity.len() + 10);
    let name = match event.signal {
        Signal::Survey { .. } => SURVEY_EVENT_NAME,
        Signal::Interaction { .. } => INTERACTION_EVENT_NAME,
    };
    attributes.push(string("event.name", name));
    attributes.extend(context.identity.iter().cloned());
    match event.signal {
        Signal::Survey { metric, score } => {
            attributes.push(string("cx.event.kind", "survey"));
            attributes.push(string("cx.survey.metric", metric.as_str()));
            attributes.push(int("cx.survey.score", i64::from(score)));
            let high = schema.score_range(metric).map_or(10, |(_, high)| high);
            attributes.push(string(
                "cx.survey.segment",
                survey_segment(metric, score, high).1,
            ));
        }
        Signal::Interaction {
            outcome,
            wait_seconds,
            handle_seconds,
        } => {
            attributes.push(string("cx.event.kind", "interaction"));
            attributes.push(string(
                "cx.interaction.outcome",
                schema.outcome_name(outcome),
            ));
            if let Some(seconds) = wait_seconds {
                attributes.push(double("cx.interaction.wait_seconds", seconds));
            }
            if let Some(seconds) = handle_seconds {
                attributes.push(double("cx.interaction.handle_seconds", seconds));
            }
        }
    }
    attributes.push(string("cx.event.id", &event.id.to_string()));
    if let Some(language) = &event.language {
        attributes.push(string("cx.comment.language", language));
    }
    if !themes.is_empty() {
        attributes.push(KeyValue {
            key_strindex: 0,
            key: "cx.themes".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: themes.iter().map(|theme| string_value(theme)).collect(),
                })),
            }),
        });
    }
    for (value, raw_key, hashed_key) in [
        (&event.customer_id, "user.id", "user.hash"),
        (&event.session_id, "session.id", "cx.session.hash"),
    ] {
        let Some(value) = value else { continue };
        match &context.identifiers {
            Identifiers::Dropped => {}
            Identifiers::Raw => attributes.push(string(raw_key, value)),
            Identifiers::Pseudonymised(key) => {
                attributes.push(string(hashed_key, &pseudonym(key, raw_key, value)));
            }
        }
    }
    let body = match (&event.comment, context.comments) {
        (Some(comment), true) => Some(string_value(comment)),
        _ => None,
    };
    LogRecord {
        time_unix_nano: event.timestamp.as_deref().and_then(unix_nano).unwrap_or(0),
        observed_time_unix_nano: observed_unix_nano,
        severity_number: SeverityNumber::Info as i32,
        severity_text: "INFO".into(),
        body,
        attributes,
        event_name: name.into(),
        ..LogRecord::default()
    }
}

/// HMAC-SHA256 of `value` under `key`, hex, with the field's name mixed in so that a customer
/// id and a session id with the same text get different pseudonyms.
pub fn pseudonym(key: &[u8], field: &str, value: &str) -> String {
    // Any key length is valid for HMAC.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(field.as_bytes());
    mac.update(&[0]);
    mac.update(value.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Nanoseconds since the Unix epoch of an RFC 3339 date-time; `None` before 1970 or unparsable.
pub fn unix_nano(rfc3339: &str) -> Option<u64> {
    let timestamp: jiff::Timestamp = rfc3339.parse().ok()?;
    u64::try_from(timestamp.as_nanosecond()).ok()
}

/// The resource of a collector's records.
pub fn resource(namespace: &str, pod: &str, pooled: bool) -> Resource {
    Resource {
        attributes: vec![
            string("service.name", SERVICE_NAME),
            string("service.version", env!("CARGO_PKG_VERSION")),
            string("service.instance.id", pod),
            string("k8s.pod.name", pod),
            string("k8s.namespace.name", namespace),
            string(
                "cx.collector.kind",
                if pooled { "pool" } else { "dedicated" },
            ),
        ],
        ..Resource::default()
    }
}

/// One export request: every record under the collector's resource and scope.
pub fn request(resource: &Resource, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource.clone()),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "cx-conductor".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..InstrumentationScope::default()
                }),
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn string_value(text: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(text.to_owned())),
    }
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key_strindex: 0,
        key: key.into(),
        value: Some(string_value(value)),
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key_strindex: 0,
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
    }
}

fn double(key: &str, value: f64) -> KeyValue {
    KeyValue {
        key_strindex: 0,
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::DoubleValue(value)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::config::CollectorConfig;
    use crate::collector::event::parse_event;
    use prost::Message;

    fn schema() -> EventSchema {
        let config: CollectorConfig = serde_yaml::from_str(
            "namespace: retail\ntouchpoint: web-checkout\nchannel: web\nstage: delivery\n\
             surveys: [{metric: nps}, {metric: csat, scale: 5}]\n\
             interactions: {outcomes: [abandoned], timings: [wait]}\nmaxEventBytes: 4096\n",
        )
        .expect("config");
        EventSchema::from_config(&config).expect("schema")
    }

    fn attribute<'r>(record: &'r LogRecord, key: &str) -> Option<&'r any_value::Value> {
        let found: Vec<_> = record
            .attributes
            .iter()
            .filter(|kv| kv.key == key)
            .collect();
        assert!(found.len() <= 1, "{key} twice");
        found.first()?.value.as_ref()?.value.as_ref()
    }

    fn text<'r>(record: &'r LogRecord, key: &str) -> Option<&'r str> {
        match attribute(record, key)? {
            any_value::Value::StringValue(s) => Some(s),
            other => panic!("{key} is {other:?}"),
        }
    }

    #[test]
    fn a_commented_survey_answer_becomes_one_log_record() {
        let schema = schema();
        let body = r#"{"type":"survey","metric":"nps","score":3,"comment":"Il corriere è arrivato in ritardo 😡","language":"it","eventId":"e-42","timestamp":"2026-11-03T10:15:00+01:00","customerId":"c-1","sessionId":"c-1"}"#;
        let event = parse_event(body.as_bytes(), &schema).expect("valid");
        let context = RecordContext::new(
            "web-checkout",
            "web",
            "delivery",
            true,
            Identifiers::Pseudonymised(b"key".to_vec()),
        );
        let record = log_record(&event, &schema, &["delivery"], &context, 7);
        assert_eq!(record.event_name, SURVEY_EVENT_NAME);
        assert_eq!(
            record.body,
            Some(string_value("Il corriere è arrivato in ritardo 😡"))
        );
        // 10:15 at +01:00 is 09:15 UTC.
        assert_eq!(record.time_unix_nano, 1_793_697_300_000_000_000);
        assert_eq!(record.observed_time_unix_nano, 7);
        assert_eq!(record.severity_number, SeverityNumber::Info as i32);
        assert_eq!(text(&record, "event.name"), Some("cx.feedback.survey"));
        assert_eq!(text(&record, "cx.touchpoint"), Some("web-checkout"));
        assert_eq!(text(&record, "cx.channel"), Some("web"));
        assert_eq!(text(&record, "cx.journey.stage"), Some("delivery"));
        assert_eq!(text(&record, "cx.event.kind"), Some("survey"));
        assert_eq!(text(&record, "cx.survey.metric"), Some("nps"));
        assert_eq!(
            attribute(&record, "cx.survey.score"),
            Some(&any_value::Value::IntValue(3))
        );
        assert_eq!(text(&record, "cx.survey.segment"), Some("detractor"));
        assert_eq!(text(&record, "cx.event.id"), Some("e-42"));
        assert_eq!(text(&record, "cx.comment.language"), Some("it"));
        assert_eq!(
            attribute(&record, "cx.themes"),
            Some(&any_value::Value::ArrayValue(ArrayValue {
                values: vec![string_value("delivery")]
            }))
        );
        // Pseudonymised, and differently for the two fields despite the same text.
        let user = text(&record, "user.hash").expect("user.hash");
        let session = text(&record, "cx.session.hash").expect("session hash");
        assert_eq!(user, pseudonym(b"key", "user.id", "c-1"));
        assert_eq!(user.len(), 64);
        assert_ne!(user, session);
        assert_ne!(user, pseudonym(b"other key", "user.id", "c-1"));
        assert_eq!(text(&record, "user.id"), None);
        assert_eq!(text(&record, "session.id"), None);
        // The encoding round-trips.
        let request = request(&resource("retail", "pod-1", true), vec![record.clone()]);
        let decoded =
            ExportLogsServiceRequest::decode(request.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(decoded.resource_logs[0].scope_logs[0].log_records, [record]);
        let resource = decoded.resource_logs[0]
            .resource
            .as_ref()
            .expect("resource");
        assert!(
            resource
                .attributes
                .contains(&string("service.name", SERVICE_NAME))
        );
        assert!(
            resource
                .attributes
                .contains(&string("k8s.namespace.name", "retail"))
        );
        assert!(
            resource
                .attributes
                .contains(&string("cx.collector.kind", "pool"))
        );
    }

    #[test]
    fn interactions_raw_identifiers_and_withheld_comments() {
        let schema = schema();
        let body = r#"{"type":"interaction","outcome":"abandoned","waitSeconds":12.5,"comment":"too slow","customerId":"c-9"}"#;
        let event = parse_event(body.as_bytes(), &schema).expect("valid");
        let context =
            RecordContext::new("web-checkout", "web", "delivery", false, Identifiers::Raw);
        let record = log_record(&event, &schema, &[], &context, 1);
        assert_eq!(record.event_name, INTERACTION_EVENT_NAME);
        assert_eq!(record.body, None, "comments off");
        assert_eq!(record.time_unix_nano, 0, "no timestamp sent");
        assert_eq!(text(&record, "cx.event.kind"), Some("interaction"));
        assert_eq!(text(&record, "cx.interaction.outcome"), Some("abandoned"));
        assert_eq!(
            attribute(&record, "cx.interaction.wait_seconds"),
            Some(&any_value::Value::DoubleValue(12.5))
        );
        assert_eq!(attribute(&record, "cx.interaction.handle_seconds"), None);
        assert_eq!(attribute(&record, "cx.themes"), None);
        assert_eq!(text(&record, "user.id"), Some("c-9"));
        assert_eq!(text(&record, "user.hash"), None);
        // An assigned event id is 32 hex digits.
        assert_eq!(text(&record, "cx.event.id").map(str::len), Some(32));
        let dropped = RecordContext::new("t", "web", "delivery", true, Identifiers::Dropped);
        let record = log_record(&event, &schema, &[], &dropped, 1);
        assert_eq!(text(&record, "user.id"), None);
        assert_eq!(text(&record, "user.hash"), None);
        assert_eq!(record.body, Some(string_value("too slow")));
    }

    #[test]
    fn timestamps_before_1970_or_unparsable_are_left_out() {
        assert_eq!(unix_nano("1970-01-01T00:00:01Z"), Some(1_000_000_000));
        assert_eq!(unix_nano("1969-12-31T23:59:59Z"), None);
        assert_eq!(unix_nano("yesterday"), None);
        assert_eq!(
            format!("{:?}", Identifiers::Pseudonymised(b"s3cret".to_vec())),
            "Pseudonymised(..)"
        );
    }
}
