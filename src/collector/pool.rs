//! What a collector serves, and how it changes while serving: the touchpoints (one for a
//! dedicated collector, every pooled touchpoint of a namespace for a pool), each with its compiled
//! event schema, its metrics and its token. A pool re-reads its configuration file and swaps the
//! touchpoints in place: no restart, and a touchpoint that keeps its labels keeps its counters.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::config::{CollectorConfig, CollectorSetup, ExportConfig};
use super::event::{Event, EventSchema, InvalidConfig, Reason};
use super::export::encode::{self, Identifiers, RecordContext};
use super::export::{ExportMetrics, Exporter, ExporterKey};
use super::metrics::{CollectorMetrics, render_families};
use super::server::{CollectorError, read_token_digest};
use opentelemetry_proto::tonic::logs::v1::LogRecord;

/// One touchpoint as a collector serves it.
pub(crate) struct Served {
    pub(crate) config: CollectorConfig,
    pub(crate) schema: EventSchema,
    pub(crate) metrics: CollectorMetrics,
    /// SHA-256 of the expected bearer token: comparing digests in constant time also hides the
    /// token's length.
    pub(crate) token_digest: Option<[u8; 32]>,
    /// Where its events are exported, when they are.
    pub(crate) export: Option<ServedExport>,
}

/// A touchpoint's export: the (shared) exporter and what its records carry.
pub(crate) struct ServedExport {
    pub(crate) exporter: Exporter,
    pub(crate) context: RecordContext,
}

impl Served {
    /// The log record of one of this touchpoint's accepted events.
    pub(crate) fn log_record(
        &self,
        event: &Event<'_>,
        observed_unix_nano: u64,
    ) -> Option<LogRecord> {
        let export = self.export.as_ref()?;
        let themes = match &event.comment {
            Some(comment) => self.metrics.themes_of(comment),
            None => Vec::new(),
        };
        Some(encode::log_record(
            event,
            &self.schema,
            &themes,
            &export.context,
            observed_unix_nano,
        ))
    }
}

/// The touchpoints a collector serves, by name.
pub(crate) struct Routes {
    /// A pool routes by `/v1/touchpoints/<name>/...`; a dedicated collector serves `/v1/events`.
    pub(crate) pooled: bool,
    pub(crate) by_name: HashMap<String, Arc<Served>>,
    /// One exporter per distinct export endpoint, shared by the touchpoints sending there.
    pub(crate) exporters: HashMap<ExporterKey, Exporter>,
    /// Exporters a reload stopped using whose `bestEffort` queues still held events then: still
    /// sending them, and flushed with the others at shutdown. Dropped at a later reload once
    /// empty.
    pub(crate) retired: Vec<Exporter>,
    /// The `cx_export_*` series of every exporter of the process.
    pub(crate) export_metrics: ExportMetrics,
}

impl Routes {
    /// Compiles `setup`, continuing the metrics of `previous` for touchpoints that are still
    /// served (an unchanged touchpoint is kept as it is).
    pub(crate) fn build(
        setup: &CollectorSetup,
        previous: Option<&Routes>,
    ) -> Result<Routes, CollectorError> {
        let pooled = matches!(setup, CollectorSetup::Pool(_));
        let namespace = match setup {
            CollectorSetup::Dedicated(config) => config.namespace.as_str(),
            CollectorSetup::Pool(pool) => pool.namespace.as_str(),
        };
        let export_metrics = match previous {
            Some(previous) => previous.export_metrics.clone(),
            None => ExportMetrics::new(namespace)?,
        };
        let mut exporters: HashMap<ExporterKey, Exporter> = HashMap::new();
        let mut by_name = HashMap::with_capacity(setup.touchpoints().len());
        for config in setup.touchpoints() {
            let before = previous.and_then(|p| p.by_name.get(&config.touchpoint));
            let exporter = match &config.export {
                None => None,
                Some(export) => {
                    let key = ExporterKey::of(export);
                    let exporter = match exporters
                        .get(&key)
                        .or_else(|| previous.and_then(|p| p.exporters.get(&key)))
                    {
                        Some(kept) => kept.clone(),
                        None => Exporter::new(
                            &key,
                            encode::resource(namespace, &pod_name(), pooled),
                            export_metrics.clone(),
                        )?,
                    };
                    exporters.insert(key, exporter.clone());
                    Some(exporter)
                }
            };
            let served = match before {
                Some(kept) if kept.config == *config => kept.clone(),
                _ => Arc::new(Served::new(config, before.map(|b| &b.metrics), exporter)?),
            };
            if by_name.insert(config.touchpoint.clone(), served).is_some() {
                return Err(InvalidConfig(format!(
                    "touchpoint {} is listed twice in the pool",
                    config.touchpoint
                ))
                .into());
            }
        }
        let retired = previous
            .map(|previous| {
                previous
                    .exporters
                    .iter()
                    .filter(|(key, _)| !exporters.contains_key(*key))
                    .map(|(_, exporter)| exporter)
                    .chain(&previous.retired)
                    .filter(|exporter| exporter.holds_events())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        Ok(Routes {
            pooled,
            by_name,
            exporters,
            retired,
            export_metrics,
        })
    }

    /// Every exporter to flush at shutdown: those in use and the retired ones still sending.
    pub(crate) fn flushed_at_shutdown(&self) -> impl Iterator<Item = &Exporter> {
        self.exporters.values().chain(&self.retired)
    }

    /// The touchpoint of a dedicated collector.
    pub(crate) fn only(&self) -> Option<&Arc<Served>> {
        if self.pooled {
            return None;
        }
        self.by_name.values().next()
    }
}

impl Served {
    fn new(
        config: &CollectorConfig,
        previous: Option<&CollectorMetrics>,
        exporter: Option<Exporter>,
    ) -> Result<Served, CollectorError> {
        let schema = EventSchema::from_config(config)?;
        let metrics = CollectorMetrics::continuing(config, &schema, previous)?;
        let token_digest = match (&config.auth, &config.auth_token_sha256) {
            (Some(auth), _) => Some(read_token_digest(Path::new(&auth.token_file))?),
            (None, Some(hex)) => Some(parse_digest(hex).ok_or_else(|| {
                InvalidConfig(format!(
                    "touchpoint {}: authTokenSha256 must be 64 hexadecimal digits",
                    config.touchpoint
                ))
            })?),
            (None, None) => None,
        };
        let export = match (exporter, &config.export) {
            (Some(exporter), Some(export)) => Some(ServedExport {
                exporter,
                context: RecordContext::new(
                    &config.touchpoint,
                    &config.channel,
                    config.stage.as_str(),
                    export.comments,
                    identifiers(export)?,
                ),
            }),
            _ => None,
        };
        Ok(Served {
            config: config.clone(),
            schema,
            metrics,
            token_digest,
            export,
        })
    }
}

/// How a touchpoint's `customerId` and `sessionId` are exported: raw when configured, else
/// pseudonymised with the key file's bytes (trailing newline trimmed), else not at all.
fn identifiers(export: &ExportConfig) -> Result<Identifiers, CollectorError> {
    if export.raw_identifiers {
        return Ok(Identifiers::Raw);
    }
    let Some(path) = &export.pseudonym_key_file else {
        return Ok(Identifiers::Dropped);
    };
    let key = std::fs::read(path).map_err(|error| {
        InvalidConfig(format!(
            "cannot read export.pseudonymKeyFile {path}: {error}"
        ))
    })?;
    let key = key.trim_ascii_end();
    if key.len() < 16 {
        return Err(InvalidConfig(format!(
            "export.pseudonymKeyFile {path} holds {} bytes; a pseudonym key needs at least 16",
            key.len()
        ))
        .into());
    }
    Ok(Identifiers::Pseudonymised(key.to_vec()))
}

/// The pod's name (Kubernetes sets `HOSTNAME` to it), for the export's resource.
fn pod_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "cx-conductor-collector".to_string())
}

/// 64 hex digits as 32 bytes.
fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(hex.chunks_exact(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(digest)
}

/// How a configuration reload ended (a label value of `cx_collector_config_reloads_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadResult {
    /// The new configuration is served.
    Applied,
    /// The file could not be used; the last good configuration keeps serving.
    Failed,
}

/// The pool's own series: reloads and requests no touchpoint can be charged with.
pub(crate) struct PoolMetrics {
    registry: Registry,
    reloads: [IntCounter; 2],
    pub(crate) unknown_touchpoint: IntCounter,
    /// Requests a pool refused before knowing their touchpoint (overload, shutdown), by reason.
    refusals: IntCounterVec,
    touchpoints: IntGauge,
    last_reload_ok: IntGauge,
}

impl PoolMetrics {
    pub(crate) fn new(namespace: &str) -> Result<PoolMetrics, prometheus::Error> {
        let registry = Registry::new();
        let labels: HashMap<String, String> =
            HashMap::from([("namespace".to_string(), namespace.to_string())]);
        let reloads = IntCounterVec::new(
            Opts::new(
                "cx_collector_config_reloads_total",
                "Configuration reloads of a collector pool, by result (applied, failed: the \
                 last good configuration keeps serving).",
            )
            .const_labels(labels.clone()),
            &["result"],
        )?;
        let unknown_touchpoint = IntCounter::with_opts(
            Opts::new(
                "cx_collector_unknown_touchpoint_requests_total",
                "Requests to a collector pool for a touchpoint it does not serve (404).",
            )
            .const_labels(labels.clone()),
        )?;
        let refusals = IntCounterVec::new(
            Opts::new(
                "cx_collector_requests_refused_total",
                "Requests a collector pool refused before routing them to a touchpoint \
                 (overloaded, shutting_down), by reason.",
            )
            .const_labels(labels.clone()),
            &["reason"],
        )?;
        let touchpoints = IntGauge::with_opts(
            Opts::new(
                "cx_collector_touchpoints",
                "Touchpoints a collector serves.",
            )
            .const_labels(labels.clone()),
        )?;
        let last_reload_ok = IntGauge::with_opts(
            Opts::new(
                "cx_collector_config_last_reload_successful",
                "1 when the last configuration read is the one served, 0 when it was refused.",
            )
            .const_labels(labels),
        )?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(unknown_touchpoint.clone()))?;
        registry.register(Box::new(refusals.clone()))?;
        registry.register(Box::new(touchpoints.clone()))?;
        registry.register(Box::new(last_reload_ok.clone()))?;
        last_reload_ok.set(1);
        Ok(PoolMetrics {
            registry,
            reloads: [
                reloads.with_label_values(&["applied"]),
                reloads.with_label_values(&["failed"]),
            ],
            unknown_touchpoint,
            refusals,
            touchpoints,
            last_reload_ok,
        })
    }

    /// Counts a reload; the touchpoints served are set by the swap itself ([`PoolMetrics::serving`]).
    pub(crate) fn reloaded(&self, result: ReloadResult) {
        match result {
            ReloadResult::Applied => {
                self.reloads[0].inc();
                self.last_reload_ok.set(1);
            }
            ReloadResult::Failed => {
                self.reloads[1].inc();
                self.last_reload_ok.set(0);
            }
        }
    }

    pub(crate) fn refused(&self, reason: Reason) {
        self.refusals.with_label_values(&[reason.as_str()]).inc();
    }

    pub(crate) fn serving(&self, touchpoints: usize) {
        self.touchpoints.set(touchpoints as i64);
    }

    /// Every series of the collector: the pool's own and each touchpoint's, merged by family.
    pub(crate) fn render(&self, routes: &Routes) -> Result<String, prometheus::Error> {
        let mut families = self.registry.gather();
        let mut served: Vec<&Arc<Served>> = routes.by_name.values().collect();
        served.sort_by(|a, b| a.config.touchpoint.cmp(&b.config.touchpoint));
        for touchpoint in served {
            families.extend(touchpoint.metrics.gather());
        }
        if !routes.exporters.is_empty() {
            families.extend(routes.export_metrics.gather());
        }
        render_families(families)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reload that stops using a `bestEffort` exporter while its queue holds events keeps it,
    /// so that the shutdown flush reaches those events too (sent, or dropped and counted); once
    /// empty, a later reload lets it go.
    #[tokio::test]
    async fn a_retired_best_effort_exporter_is_flushed_at_shutdown() {
        let pool = |export: &str| {
            CollectorSetup::from_yaml(&format!(
                "namespace: retail\ntouchpoints:\n  - namespace: retail\n    touchpoint: web\n    channel: web\n    stage: purchase\n    surveys: [{{ metric: nps }}]\n    maxEventBytes: 4096\n{export}"
            ))
            .expect("pool")
        };
        // Nothing listens on port 9: the queue keeps its events, retrying.
        let exporting = pool(
            "    export: { endpoint: \"http://127.0.0.1:9\", delivery: bestEffort, timeoutMillis: 100 }\n",
        );
        let first = Routes::build(&exporting, None).expect("routes");
        let exporter = first
            .exporters
            .values()
            .next()
            .expect("an exporter")
            .clone();
        exporter
            .export(vec![LogRecord::default(), LogRecord::default()])
            .await
            .expect("queued");
        assert!(exporter.holds_events());
        let reloaded = Routes::build(&pool(""), Some(&first)).expect("routes");
        assert!(reloaded.exporters.is_empty());
        assert_eq!(reloaded.retired.len(), 1);
        assert_eq!(reloaded.flushed_at_shutdown().count(), 1);
        // Still holding events at the next reload: still kept.
        let again = Routes::build(&pool(""), Some(&reloaded)).expect("routes");
        assert_eq!(again.retired.len(), 1);
        let dropped = || {
            let text = render_families(again.export_metrics.gather()).expect("rendered");
            text.lines()
                .find(|l| l.starts_with("cx_export_dropped_events_total") && l.contains("shutdown"))
                .map(|l| l.rsplit(' ').next().unwrap_or_default().to_owned())
        };
        for exporter in again.flushed_at_shutdown() {
            exporter
                .flush(tokio::time::Instant::now() + std::time::Duration::from_millis(50))
                .await;
        }
        assert!(!exporter.holds_events());
        assert_eq!(dropped().as_deref(), Some("2"));
        // Empty: the next reload lets it go.
        let last = Routes::build(&pool(""), Some(&again)).expect("routes");
        assert!(last.retired.is_empty());
    }

    #[test]
    fn digests_are_64_hex_digits() {
        let digest = parse_digest(&"ab".repeat(32)).expect("valid");
        assert_eq!(digest, [0xab; 32]);
        assert!(parse_digest("abc").is_none());
        assert!(parse_digest(&"zz".repeat(32)).is_none());
    }
}
