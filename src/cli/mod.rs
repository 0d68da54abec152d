//! Command-line interface: subcommands and their options.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub mod check;
pub mod map;
pub mod report;
pub mod run;

/// cx-conductor conducts omnichannel customer-experience infrastructure on Kubernetes.
#[derive(Parser, Debug)]
#[command(name = "cx-conductor", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the CustomResourceDefinitions as one multi-document YAML (what `crds/` holds).
    Crd,
    /// Check manifests without a cluster: schema, consistency, coverage, readiness and deployment plan.
    Check(CheckArgs),
    /// Draw each journey's experience map (stages × channels, touchpoints, gaps, KPIs) as SVG or
    /// HTML, from manifests (`-f`) or from the cluster.
    Map(map::MapArgs),
    /// Run the operator: deploy collectors and keep every resource's status true.
    Run(Box<run::RunArgs>),
    /// Run a touchpoint's feedback collector: HTTP event ingest and Prometheus metrics.
    Collector(crate::collector::CollectorArgs),
}

/// Options of `cx-conductor check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Files or folders (read recursively) of manifests; `-` reads stdin. Repeatable.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
    /// Report format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Print the Kubernetes objects the operator would deploy instead of the report: YAML, or a
    /// JSON `v1` List with `-o json`, collectors then the KPIs' PrometheusRules (one per namespace,
    /// applied with `run --prometheus-rules`). Errors go to stderr (and the exit code is 1).
    #[arg(long)]
    pub plan: bool,
    /// Collector image to plan when a touchpoint names none (default: this version's image).
    #[arg(long)]
    pub collector_image: Option<String>,
    /// Plan a ServiceMonitor per collector (Prometheus Operator).
    #[arg(long)]
    pub service_monitor: bool,
    /// Plan a NetworkPolicy per collector admitting only event and scrape traffic.
    #[arg(long)]
    pub network_policy: bool,
    /// Print every KPI's PromQL in the text report (value, samples, previous cycle), ready to
    /// paste into Prometheus; `-o json` always carries them (`kpiQueries`).
    #[arg(long)]
    pub queries: bool,
    /// Colour the text report: auto (only on a terminal), always or never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

/// Report formats.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// Tables for people.
    Text,
    /// A stable JSON document for pipelines.
    Json,
}

/// When to colour output.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorChoice {
    /// Only when stdout is a terminal.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Crd => {
            write_stdout(&crate::crd::to_yaml());
            ExitCode::SUCCESS
        }
        Command::Check(args) => run_check(&args),
        Command::Map(args) => map::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Collector(args) => crate::collector::run(&args),
    }
}

/// Writes `text` to stdout. A reader that went away (`cx-conductor check ... | head`) is not an
/// error worth a panic: the rest of the output is dropped quietly.
pub fn write_stdout(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// `cx-conductor check`: computes the outcome, prints it in the asked format, returns the exit code.
fn run_check(args: &CheckArgs) -> ExitCode {
    use crate::core::plan::PlanOptions;
    let options = PlanOptions {
        default_image: args
            .collector_image
            .clone()
            .unwrap_or_else(|| PlanOptions::default().default_image),
        service_monitor: args.service_monitor,
        network_policy: args.network_policy,
        ..PlanOptions::default()
    };
    let outcome = match check::check_paths(&args.paths, &options) {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(check::EXIT_UNUSABLE);
        }
    };
    let stderr_color = match args.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => std::io::stderr().is_terminal(),
    };
    if args.plan {
        write_stdout(&match args.output {
            OutputFormat::Json => report::render_plan_json(
                &outcome.plans,
                &outcome.pools,
                &outcome.shared,
                &outcome.rules,
            ),
            OutputFormat::Text => report::render_plan(
                &outcome.plans,
                &outcome.pools,
                &outcome.shared,
                &outcome.rules,
            ),
        });
        let summary = &outcome.report.summary;
        if summary.errors > 0 {
            // The plan leaves out what is refused or broken: say what, where people look.
            eprint!("{}", report::render_errors(&outcome.report, stderr_color));
            eprintln!(
                "check failed: {}; the plan covers only what the API server would accept (run without --plan for the whole report)",
                crate::core::analysis::count(summary.errors, "error", "errors")
            );
        }
    } else {
        match args.output {
            OutputFormat::Json => match serde_json::to_string_pretty(&outcome.report) {
                Ok(json) => write_stdout(&format!("{json}\n")),
                Err(e) => {
                    eprintln!("error: cannot render the report: {e}");
                    return ExitCode::from(check::EXIT_UNUSABLE);
                }
            },
            OutputFormat::Text => {
                let color = match args.color {
                    ColorChoice::Always => true,
                    ColorChoice::Never => false,
                    ColorChoice::Auto => std::io::stdout().is_terminal(),
                };
                write_stdout(&report::render_text(&outcome.report, color, args.queries));
            }
        }
    }
    ExitCode::from(outcome.exit_code())
}
