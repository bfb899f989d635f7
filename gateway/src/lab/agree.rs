//! `poolgate lab agree`: do the real-time figures agree with the simulated ones?
//!
//! A few points — no failures under Least Used, Round Robin and Random, and one
//! point with silent failures — run simulated over many seeds (mean and 95 % CI)
//! and in real time over the first few of the same seeds (both draw the same
//! requests and failures for a seed); the table says, per figure, whether the
//! real-time mean lies within the simulated 95 % CI, and whether real and
//! simulated runs of the same seeds are closer than that CI's half-width (the
//! runs share their requests and failures, so the difference is the real
//! system's own, not the workload's sampling).

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::cli::{force_registrar_items, ParamArgs};
use super::params::{Params, PolicyChoice};
use super::real::RealOptions;
use super::runner::{self, PointSpec, Summary};
use super::stats::Estimate;

/// Options of `poolgate lab agree`.
#[derive(Debug, Args)]
pub struct AgreeArgs {
    /// Simulated runs (seeds) per point.
    #[arg(long, default_value_t = 20)]
    pub sim_seeds: u64,
    /// Real-time runs per point.
    #[arg(long, default_value_t = 3)]
    pub real_seeds: u64,
    /// Real seconds per scenario second.
    #[arg(long, default_value_t = 0.02, value_name = "SCALE")]
    pub time_scale: f64,
    /// PE MTBF (request handling times) of the point with silent failures.
    #[arg(long, default_value_t = 10.0)]
    pub failure_mtbf: f64,
    /// Write the table as Markdown to this file.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Write every run (both modes) as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Scenario parameters (the base of every point).
    #[command(flatten)]
    pub params: ParamArgs,
}

/// One point compared.
#[derive(Debug, Serialize)]
pub struct Comparison {
    /// What the point is.
    pub label: String,
    /// Its parameters.
    pub params: Params,
    /// Simulated summary.
    pub sim: Summary,
    /// Every simulated run, seeds 1, 2, … (the real runs use the first seeds).
    pub sim_runs: Vec<super::sim::RunResult>,
    /// Real-time summary.
    pub real: Summary,
    /// Every real-time run.
    pub real_runs: Vec<super::real::RealRun>,
}

/// The points compared: (label, parameters).
pub fn points(base: &Params, failure_mtbf: f64) -> Vec<(String, Params)> {
    let mut out = Vec::new();
    for policy in [
        PolicyChoice::LeastUsed,
        PolicyChoice::RoundRobin,
        PolicyChoice::Random,
    ] {
        let mut p = base.clone();
        p.policy = policy;
        p.mtbf = None;
        p.mtbf_seconds = None;
        out.push((format!("{policy}, no failures"), p));
    }
    let mut p = base.clone();
    p.policy = PolicyChoice::LeastUsed;
    p.mtbf = Some(failure_mtbf);
    p.mtbf_seconds = None;
    p.silent = 1.0;
    out.push((format!("lu, silent failures, MTBF {failure_mtbf}"), p));
    out
}

/// The figures compared: (name, how to read it, scale for display, digits).
type Figure = (&'static str, fn(&Summary) -> Estimate, f64, usize);

const FIGURES: &[Figure] = &[
    ("utilisation %", |s| s.utilisation, 100.0, 1),
    ("handling speed %", |s| s.handling_speed, 1.0, 1),
    ("lost work %", |s| s.lost_share, 100.0, 2),
    (
        "lost per interrupted request, calc",
        |s| s.lost_per_interrupted,
        1.0,
        0,
    ),
];

fn pm(e: &Estimate, scale: f64, d: usize) -> String {
    if e.mean.is_nan() {
        return "-".into();
    }
    format!("{:.d$} ± {:.d$}", e.mean * scale, e.ci95 * scale)
}

/// The comparison as a Markdown table.
pub fn markdown(rows: &[Comparison], sim_seeds: u64, real_seeds: u64, scale: f64) -> String {
    let mut s = String::new();
    let seeds = if real_seeds == 1 {
        "seed 1".to_string()
    } else {
        format!("seeds 1–{real_seeds}")
    };
    let _ = writeln!(
        s,
        "| point | figure | simulated, {sim_seeds} seeds | real time (1 s = {} ms), {seeds} | real mean in the simulated 95 % CI | simulated, {seeds} | real − simulated, same seeds | same-seed difference within the CI |",
        scale * 1000.0
    );
    s.push_str("|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let failing = r.params.mtbf_secs().is_some();
        for (name, get, scale, d) in FIGURES {
            if !failing && name.starts_with("lost") {
                continue;
            }
            let (sim, real) = (get(&r.sim), get(&r.real));
            let m = r.real_runs.len().min(r.sim_runs.len());
            let same = Estimate::of(
                &r.sim_runs[..m]
                    .iter()
                    .map(|x| get(&Summary::of(std::slice::from_ref(x))).mean)
                    .collect::<Vec<_>>(),
            );
            let diff = Estimate::of(
                &r.real_runs[..m]
                    .iter()
                    .zip(&r.sim_runs[..m])
                    .map(|(a, b)| {
                        get(&Summary::of(std::slice::from_ref(&a.result))).mean
                            - get(&Summary::of(std::slice::from_ref(b))).mean
                    })
                    .collect::<Vec<_>>(),
            );
            let yes = |b: bool| if b { "yes" } else { "**no**" };
            let _ = writeln!(
                s,
                "| {} | {name} | {} | {} | {} | {} | {} | {} |",
                r.label,
                pm(&sim, *scale, *d),
                pm(&real, *scale, *d),
                yes(sim.contains(real.mean)),
                pm(&same, *scale, *d),
                pm(&diff, *scale, *d),
                yes(diff.mean.abs() <= sim.ci95),
            );
        }
        let issued: u64 = r.real_runs.iter().map(|x| x.issued).sum();
        let unfinished: u64 = r.real_runs.iter().map(|x| x.unfinished).sum();
        let runs = r.real_runs.len().max(1) as f64;
        let late = r
            .real_runs
            .iter()
            .map(|x| x.pe_timer_lateness_ms)
            .sum::<f64>()
            / runs;
        let wall = r.real_runs.iter().map(|x| x.wall_seconds).sum::<f64>() / runs;
        let _ = writeln!(
            s,
            "| {} | real runs: requests issued / unfinished after the drain; failures per run; PE timer lateness; wall time per run | | {issued} / {unfinished}; {:.1}; {late:.2} ms; {wall:.0} s | | | | |",
            r.label, r.real.failures.mean,
        );
    }
    s
}

/// Runs `poolgate lab agree`.
pub fn run(a: &AgreeArgs) -> anyhow::Result<()> {
    let mut base = a.params.params()?;
    force_registrar_items(&mut base);
    if a.sim_seeds < 2 || a.real_seeds == 0 {
        anyhow::bail!("--sim-seeds must be at least 2 and --real-seeds at least 1");
    }
    let opts = RealOptions::new(a.time_scale)?;
    let pts = points(&base, a.failure_mtbf);
    let mut rows = Vec::new();
    let total = pts.len();
    for (i, (label, p)) in pts.into_iter().enumerate() {
        eprintln!("[{}/{total}] {label}", i + 1);
        let (sim, sim_runs) = runner::run_one(&p, a.sim_seeds)?;
        let spec = PointSpec {
            value: String::new(),
            by_value: None,
            policy: p.policy,
            params: p.clone(),
        };
        let progress = runner::stderr_progress("real time".into());
        let mut res = runner::run_points_real(vec![spec], a.real_seeds, &opts, &progress)?;
        let r = res.remove(0);
        rows.push(Comparison {
            label,
            params: p,
            sim,
            sim_runs,
            real: r.summary,
            real_runs: r.real,
        });
    }
    let md = markdown(&rows, a.sim_seeds, a.real_seeds, a.time_scale);
    print!("{md}");
    if let Some(f) = &a.markdown {
        std::fs::write(f, &md)?;
    }
    if let Some(f) = &a.json {
        std::fs::write(f, serde_json::to_string_pretty(&rows)?)?;
    }
    Ok(())
}
