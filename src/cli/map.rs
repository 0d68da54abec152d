//! `cx-conductor map`: the shell around [`crate::map`]. Reads manifests (`-f`) or, without them, a
//! cluster (read-only: four lists), then writes one SVG or HTML file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::DeserializeGuard;
use kube::{Client, Config};

use crate::api::{Channel, CustomerJourney, ExperienceKPI, Touchpoint};
use crate::core::{World, analyze};
use crate::manifest::{Inventory, load_paths};
use crate::map::{MapDocument, render_html, render_svg};
use crate::schema::SchemaValidator;

use super::check::{EXIT_ERRORS, EXIT_UNUSABLE};

/// Options of `cx-conductor map`.
#[derive(clap::Args, Debug)]
pub struct MapArgs {
    /// Files or folders (read recursively) of manifests to draw; `-` reads stdin. Without it, the
    /// map is drawn from the cluster of the kubeconfig's context.
    #[arg(short = 'f', long = "filename", num_args = 1..)]
    pub paths: Vec<PathBuf>,
    /// Write the map to this file: a picture when it ends in `.svg`, one HTML page when it ends
    /// in `.html`. Default: the HTML page on stdout.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Kubeconfig to read the cluster with (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, conflicts_with = "paths")]
    pub kubeconfig: Option<PathBuf>,
    /// Context of the kubeconfig (default: its current context).
    #[arg(long, conflicts_with = "paths")]
    pub context: Option<String>,
    /// Namespace to draw (default: the context's, else `default`).
    #[arg(short = 'n', long, conflicts_with = "paths")]
    pub namespace: Option<String>,
    /// Draw the journeys of every namespace.
    #[arg(short = 'A', long, conflicts_with_all = ["paths", "namespace"])]
    pub all_namespaces: bool,
    /// Prometheus scraping the collectors (e.g. http://prometheus.monitoring:9090): the map then
    /// shows each stage's top themes and their share of the stage's comments. Only for a cluster.
    #[arg(long, conflicts_with = "paths")]
    pub prometheus_url: Option<String>,
    /// The window the themes are counted over (a duration such as 28d or 7d).
    #[arg(long, default_value = "28d", requires = "prometheus_url")]
    pub themes_window: String,
}

/// Runs `cx-conductor map`: 0 when drawn without errors, 1 when drawn with errors (listed on the
/// map), 2 when nothing could be drawn (unreadable input, unreachable cluster, unwritable output).
pub fn run(args: &MapArgs) -> ExitCode {
    let svg = match args.output.as_ref().map(|p| {
        p.extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
    }) {
        None => false,
        Some(Some(e)) if e == "svg" => true,
        Some(Some(e)) if e == "html" || e == "htm" => false,
        Some(other) => {
            eprintln!(
                "error: --output {}: a map is written as .svg (a picture) or .html (a page), not {}",
                args.output
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                other.map_or_else(
                    || "a file without extension".to_string(),
                    |e| format!(".{e}")
                )
            );
            return ExitCode::from(EXIT_UNUSABLE);
        }
    };
    let document = if args.paths.is_empty() {
        match live_document(args) {
            Ok(document) => document,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_UNUSABLE);
            }
        }
    } else {
        match manifest_document(&args.paths) {
            Ok(document) => document,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_UNUSABLE);
            }
        }
    };
    let rendered = if svg {
        render_svg(&document)
    } else {
        render_html(&document)
    };
    let errors = document.count(crate::api::Severity::Error);
    match &args.output {
        None => super::write_stdout(&rendered),
        Some(path) => {
            if let Err(e) = std::fs::write(path, &rendered) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return ExitCode::from(EXIT_UNUSABLE);
            }
            eprintln!(
                "map of {} written to {}{}",
                crate::core::analysis::count(document.journeys.len(), "journey", "journeys"),
                path.display(),
                if errors > 0 {
                    format!(
                        ", with {} listed on it",
                        crate::core::analysis::count(errors, "error", "errors")
                    )
                } else {
                    String::new()
                }
            );
        }
    }
    if errors > 0 {
        ExitCode::from(EXIT_ERRORS)
    } else {
        ExitCode::SUCCESS
    }
}

/// The map of manifests. `Err` when nothing can be read (the same cases as `check`'s exit 2).
fn manifest_document(paths: &[PathBuf]) -> Result<MapDocument, String> {
    let documents = load_paths(paths).map_err(|e| e.to_string())?;
    let inventory = Inventory::from_documents(&documents, &SchemaValidator::new());
    let given: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    if inventory.origins.is_empty() && inventory.rejected.is_empty() {
        return Err(format!(
            "{}: no cx.conductor.dev resource to draw",
            given.join(", ")
        ));
    }
    Ok(crate::map::from_inventory(
        &inventory,
        format!("manifests {}", given.join(", ")),
    ))
}

/// The map of a cluster, read with the kubeconfig's context. Statuses are the cluster's: KPI
/// values, gaps and states and collector readiness are drawn as the operator last wrote them.
fn live_document(args: &MapArgs) -> Result<MapDocument, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(read_cluster(args))
}

async fn read_cluster(args: &MapArgs) -> Result<MapDocument, String> {
    let kubeconfig = match &args.kubeconfig {
        Some(path) => Kubeconfig::read_from(path)
            .map_err(|e| format!("cannot read kubeconfig {}: {e}", path.display()))?,
        None => Kubeconfig::read().map_err(|e| {
            format!("cannot read a kubeconfig ($KUBECONFIG or ~/.kube/config; or map manifests with -f): {e}")
        })?,
    };
    let context = args
        .context
        .clone()
        .or_else(|| kubeconfig.current_context.clone())
        .unwrap_or_else(|| "<no current context>".into());
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| format!("context {context}: {e}"))?;
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(Duration::from_secs(30));
    let server = config.cluster_url.to_string();
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| format!("context {context}: {e}"))?;
    let unreachable = |e: kube::Error| {
        // The causes say what happened: connection refused, unknown certificate, forbidden...
        let mut why = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !why.contains(&text) {
                why.push_str(": ");
                why.push_str(&text);
            }
            source = cause.source();
        }
        format!("cannot read the cluster of context {context} at {server}: {why}")
    };
    let (channels, touchpoints, kpis, journeys) = tokio::try_join!(
        readable::<Channel>(&client, args.all_namespaces, &namespace),
        readable::<Touchpoint>(&client, args.all_namespaces, &namespace),
        readable::<ExperienceKPI>(&client, args.all_namespaces, &namespace),
        readable::<CustomerJourney>(&client, args.all_namespaces, &namespace),
    )
    .map_err(unreachable)?;
    let world = World::new(&channels, &touchpoints, &kpis, &journeys);
    let analysis = analyze(&world);
    let scope = if args.all_namespaces {
        "all namespaces".to_string()
    } else {
        format!("namespace {namespace}")
    };
    let mut document = crate::map::document(
        &world,
        &analysis.journeys,
        &analysis.findings,
        &[],
        format!("cluster context {context} ({server}), {scope}"),
    );
    if let Some(url) = &args.prometheus_url {
        let namespace = (!args.all_namespaces).then_some(namespace.as_str());
        match read_themes(url, namespace, &args.themes_window).await {
            Ok(counts) => crate::map::model::with_themes(&mut document, &counts),
            // The map is still drawn, without the themes row.
            Err(e) => eprintln!("warning: themes not shown: {e}"),
        }
    }
    Ok(document)
}

/// Comments and theme mentions per touchpoint over `window`, from Prometheus.
async fn read_themes(
    url: &str,
    namespace: Option<&str>,
    window: &str,
) -> Result<crate::map::model::ThemeCounts, String> {
    use crate::kpi::prometheus::QueryResult;
    use crate::kpi::{PrometheusClient, PrometheusConfig, WindowSpec};
    let spec = WindowSpec::parse(window).map_err(|e| format!("--themes-window {window}: {e}"))?;
    let client = PrometheusClient::new(PrometheusConfig::new(url.to_string()))
        .map_err(|e| format!("--prometheus-url {url}: {e}"))?;
    let now = k8s_openapi::jiff::Timestamp::now();
    let [comments, mentions] = crate::map::model::theme_queries(namespace, &spec.current(now));
    let (comments, mentions) =
        tokio::try_join!(client.query(&comments, now), client.query(&mentions, now))
            .map_err(|e| e.to_string())?;
    let rows = |answer: QueryResult| match answer {
        QueryResult::Vector(samples) => samples,
        QueryResult::Scalar(_) => Vec::new(),
    };
    Ok(crate::map::model::theme_counts(
        window,
        &rows(comments),
        &rows(mentions),
    ))
}

/// Every object of kind `K` in `namespace` (or all of them): one that cannot be read as `K` (a
/// newer CRD's field, a hand-edited object) is left out and named on stderr, never a reason to
/// draw no map at all.
async fn readable<K>(client: &Client, all: bool, namespace: &str) -> Result<Vec<K>, kube::Error>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + serde::de::DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let api: Api<DeserializeGuard<K>> = if all {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), namespace)
    };
    let mut kept = Vec::new();
    for guard in api.list(&ListParams::default()).await?.items {
        match guard.0 {
            Ok(object) => kept.push(object),
            Err(invalid) => eprintln!(
                "warning: left out {} {}/{}: {}",
                K::kind(&()),
                invalid.metadata.namespace.as_deref().unwrap_or_default(),
                invalid.metadata.name.as_deref().unwrap_or_default(),
                invalid.error
            ),
        }
    }
    Ok(kept)
}
