//! The `poolgate` binary: parse the command line, set up logging, configuration,
//! metrics, systemd notification and signals, then hand over to the role.

use std::process::ExitCode;

use clap::Parser;

use poolgate::check::{self, EXIT_CONFIG};
use poolgate::cli::{Cli, Command, RoleArgs};
use poolgate::config::Diagnostic;
use poolgate::config::{self, AnyConfig, Role, Sources};
use poolgate::notify::{self, Notifier};
use poolgate::signals::Signals;
use poolgate::telemetry::{self, LogFormat, MetricsServer, Registry};
use poolgate::RoleContext;

/// mimalloc: the data path frees and re-faults 64 KiB buffers, which glibc's default
/// trim/mmap thresholds make cost about 3x (pg-transport-bench: 1.1 vs 3.0 GB/s).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Check(args) => check::run_check(args),
        Command::Status(args) => check::run_status(args),
        Command::Lab(args) => poolgate::lab::cli::run(args),
        Command::Registrar(args) => start(&cli, Role::Registrar, args),
        Command::Ppe(args) => start(&cli, Role::Ppe, args),
        Command::Ppu(args) => start(&cli, Role::Ppu, args),
    }
}

/// The one place that runs a role. The integrator replaces each arm with the
/// role's driver, e.g. `AnyConfig::Ppu(c) => poolgate::ppu::run(c, ctx).await`.
async fn run_role(config: AnyConfig, ctx: RoleContext) -> anyhow::Result<()> {
    match config {
        AnyConfig::Registrar(c) => poolgate::registrar::run(c, ctx).await,
        AnyConfig::Ppe(c) => poolgate::ppe::run(c, ctx).await,
        AnyConfig::Ppu(c) => poolgate::ppu::run(c, ctx).await,
    }
}

/// Set up the process around a role and run it.
fn start(cli: &Cli, role: Role, args: &RoleArgs) -> ExitCode {
    if let Err(e) = telemetry::logging::init(cli.log_format, &cli.log_level) {
        eprintln!("poolgate: {e}");
        return ExitCode::from(2);
    }
    let sources = Sources::from_process(args.config.clone(), args.set.clone());
    let loaded = match config::load_any(role, &sources) {
        Ok(l) => l,
        Err(diags) => {
            if cli.log_format == LogFormat::Json {
                diags.iter().for_each(log_diagnostic);
            } else {
                check::print_diagnostics(&diags);
            }
            tracing::error!(role = %role, errors = diags.iter().filter(|d| d.is_error()).count(), "configuration invalid");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    loaded.warnings.iter().for_each(log_diagnostic);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    match loaded.config.threads() {
        // tokio's default: TOKIO_WORKER_THREADS, else one per CPU.
        0 => {}
        n => {
            builder.worker_threads(n as usize);
        }
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let workers = runtime.metrics().num_workers();
    tracing::info!(role = %role, workers, "runtime started");
    let result = runtime.block_on(async move {
        let registry = Registry::new();
        register_process_metrics(&registry, role, workers)?;
        let notifier = Notifier::from_env()?;
        let signals = Signals::install()?;
        let metrics = loaded.config.metrics();
        let metrics_addr = if metrics.enabled {
            let server = MetricsServer::bind(metrics.listen.0, registry.clone())
                .await
                .map_err(|e| {
                    anyhow::anyhow!("cannot bind the metrics endpoint {}: {e}", metrics.listen)
                })?;
            let addr = server.local_addr()?;
            tracing::info!(%addr, "metrics endpoint listening");
            tokio::spawn(server.run(std::future::pending()));
            Some(addr)
        } else {
            None
        };
        let _watchdog = notify::spawn_watchdog_from_env(&notifier);
        let ctx = RoleContext {
            sources,
            registry,
            notifier,
            signals,
            metrics_addr,
        };
        run_role(loaded.config, ctx).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(role = %role, error = %format!("{e:#}"), "stopped");
            ExitCode::FAILURE
        }
    }
}

/// One configuration diagnostic as a log event (fields, so JSON logs stay queryable).
fn log_diagnostic(d: &Diagnostic) {
    let location = d
        .location
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    if d.is_error() {
        tracing::error!(key = %d.key, location = %location, reason = %d.message, "configuration error");
    } else {
        tracing::warn!(key = %d.key, location = %location, reason = %d.message, "configuration warning");
    }
}

/// Metrics every role exposes: build info, start time and worker threads.
fn register_process_metrics(registry: &Registry, role: Role, workers: usize) -> anyhow::Result<()> {
    registry
        .gauge_vec(
            "poolgate_build_info",
            "Build of this poolgate process (always 1).",
            &["version", "role"],
        )?
        .with(&[env!("CARGO_PKG_VERSION"), role.name()])?
        .set(1.0);
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    registry
        .gauge(
            "poolgate_start_time_seconds",
            "Start time of the process since the Unix epoch.",
        )?
        .set(start);
    registry
        .gauge(
            "poolgate_worker_threads",
            "Worker threads of the async runtime (the role's `threads`, 0 = one per CPU).",
        )?
        .set(workers as f64);
    Ok(())
}
