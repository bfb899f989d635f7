//! `poolgate lab agree`: do the real-time figures agree with the simulated ones?
//!
//! A few points — no failures under Least Used, Round Robin and Random, and one
//! point with silent failures — run simulated over many seeds (mean and 95 % CI)
//! and in real time over a few seeds; the table says, per figure, whether the
//! real-time mean lies within the simulated 95 % CI and whether the two
//! intervals overlap.

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
    ("lost per interrupted request, calc", |s| s.lost_per_interrupted, 1.0, 0),
];

fn pm(e: &Estimate, scale: f64, d: usize) -> String {
    if e.mean.is_nan() {
        return "-".into();
    }
    format!("{:.d$} ± {:.d$}", e.mean * scale, e.ci95 * scale)
}

/// Whether two intervals overlap.
fn overlap(a: &Estimate, b: &Estimate) -> bool {
    a.low() <= b.high() && b.low() <= a.high()
}

/// The comparison as a Markdown table.
pub fn markdown(rows: &[Comparison], sim_seeds: u64, real_seeds: u64, scale: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| point | figure | simulated ({sim_seeds} seeds) | real time ({real_seeds} runs, 1 s = {} ms) | real mean in sim 95 % CI | CIs overlap |",
        scale * 1000.0
    );
    s.push_str("|---|---|---|---|---|---|\n");
    for r in rows {
        let failing = r.params.mtbf_secs().is_some();
        for (name, get, scale, d) in FIGURES {
            let (sim, real) = (get(&r.sim), get(&r.real));
            if !failing && (name.starts_with("lost")) {
                continue;
            }
            if sim.mean.is_nan() && real.mean.is_nan() {
                continue;
            }
            let yes = |b: bool| if b { "yes" } else { "**no**" };
            let _ = writeln!(
                s,
                "| {} | {name} | {} | {} | {} | {} |",
                r.label,
                pm(&sim, *scale, *d),
                pm(&real, *scale, *d),
                yes(sim.contains(real.mean)),
                yes(overlap(&sim, &real)),
            );
        }
        let unfinished: u64 = r.real_runs.iter().map(|x| x.unfinished).sum();
        let issued: u64 = r.real_runs.iter().map(|x| x.issued).sum();
        let failures: f64 = r.real.failures.mean;
        let _ = writeln!(
            s,
            "| {} | (real) requests issued / unfinished after drain, failures per run | | {issued} / {unfinished}, {failures:.1} | | |",
            r.label
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
    let progress = runner::stderr_progress("real time".into());
    let mut rows = Vec::new();
    let total = pts.len();
    for (i, (label, p)) in pts.into_iter().enumerate() {
        eprintln!("[{}/{total}] {label}", i + 1);
        let (sim, _) = runner::run_one(&p, a.sim_seeds)?;
        let spec = PointSpec {
            value: String::new(),
            by_value: None,
            policy: p.policy,
            params: p.clone(),
        };
        let mut res = runner::run_points_real(vec![spec], a.real_seeds, &opts, &progress)?;
        let r = res.remove(0);
        rows.push(Comparison {
            label,
            params: p,
            sim,
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
