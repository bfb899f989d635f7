//! `poolgate lab agree`: do the real-time figures agree with the simulated ones?
//!
//! A few points — no failures under Least Used, Round Robin and Random, and one
//! point with silent failures — run simulated over many seeds (mean and 95 % CI)
//! and in real time over the first few of the same seeds (both draw the same
//! requests and failures for a seed). Real time applies the scenario's network
//! delay to every message ([`super::real::delay`]) and reports how much later
//! than modelled messages were acted on (the residual latency).
//!
//! The criterion ([`agrees`]): a figure agrees when the 95 % confidence
//! intervals of the real runs and of the simulated runs overlap. The table also
//! says whether the real mean lies inside the simulated CI (stricter, but with
//! three real seeds their mean carries the seeds' own sampling error) and shows
//! the difference between real and simulated runs of the same seeds (the runs
//! share their requests and failures, so that difference is the real system's
//! own). A second simulation adds the measured residual latency to the
//! network delay (the calibrated simulation): what is left between it and the
//! real runs is not the host's latency.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::cli::ParamArgs;
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
    /// The network delay of the calibrated simulation: the scenario's plus the
    /// real runs' mean residual latency per message (s).
    pub calibrated_delay: f64,
    /// Simulated summary at the calibrated delay.
    pub sim_calibrated: Summary,
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

/// The agreement criterion: the two 95 % confidence intervals overlap.
pub fn agrees(sim: &Estimate, real: &Estimate) -> bool {
    sim.low() <= real.high() && real.low() <= sim.high()
}

/// A figure of one run.
fn of(get: fn(&Summary) -> Estimate, r: &super::sim::RunResult) -> f64 {
    get(&Summary::of(std::slice::from_ref(r))).mean
}

/// Whether every figure compared at `row` agrees by [`agrees`].
pub fn row_agrees(row: &Comparison) -> bool {
    let failing = row.params.mtbf_secs().is_some();
    FIGURES
        .iter()
        .filter(|(name, ..)| failing || !name.starts_with("lost"))
        .all(|(_, get, ..)| agrees(&get(&row.sim), &get(&row.real)))
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
        "| point | figure | simulated, {sim_seeds} seeds | real time (1 s = {} ms), per seed | real, {seeds} | **agrees: the 95 % CIs overlap** | real mean in the simulated CI | simulated, {seeds} | real − simulated, same seeds | simulated with the residual added to the delay, {sim_seeds} seeds | real mean in that CI |",
        scale * 1000.0
    );
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let failing = r.params.mtbf_secs().is_some();
        for (name, get, scale, d) in FIGURES {
            if !failing && name.starts_with("lost") {
                continue;
            }
            let (sim, real) = (get(&r.sim), get(&r.real));
            let calibrated = get(&r.sim_calibrated);
            let m = r.real_runs.len().min(r.sim_runs.len());
            let same = Estimate::of(
                &r.sim_runs[..m]
                    .iter()
                    .map(|x| of(*get, x))
                    .collect::<Vec<_>>(),
            );
            let diff = Estimate::of(
                &r.real_runs[..m]
                    .iter()
                    .zip(&r.sim_runs[..m])
                    .map(|(a, b)| of(*get, &a.result) - of(*get, b))
                    .collect::<Vec<_>>(),
            );
            let per_seed = r
                .real_runs
                .iter()
                .map(|x| {
                    let v = of(*get, &x.result) * scale;
                    if v.is_nan() {
                        "-".to_string()
                    } else {
                        format!("{v:.d$}")
                    }
                })
                .collect::<Vec<_>>()
                .join(" / ");
            let yes = |b: bool| if b { "yes" } else { "**no**" };
            let _ = writeln!(
                s,
                "| {} | {name} | {} | {per_seed} | {} | {} | {} | {} | {} | {} | {} |",
                r.label,
                pm(&sim, *scale, *d),
                pm(&real, *scale, *d),
                yes(agrees(&sim, &real)),
                yes(sim.contains(real.mean)),
                pm(&same, *scale, *d),
                pm(&diff, *scale, *d),
                pm(&calibrated, *scale, *d),
                yes(calibrated.contains(real.mean)),
            );
        }
        let issued: u64 = r.real_runs.iter().map(|x| x.issued).sum();
        let unfinished: u64 = r.real_runs.iter().map(|x| x.unfinished).sum();
        let runs = r.real_runs.len().max(1) as f64;
        let mean =
            |f: fn(&super::real::RealRun) -> f64| r.real_runs.iter().map(f).sum::<f64>() / runs;
        let late = mean(|x| x.pe_timer_lateness_ms);
        let wall = mean(|x| x.wall_seconds);
        let residual = mean(|x| x.message_lateness_ms);
        let residual_scenario = mean(|x| x.message_lateness_scenario_ms);
        let overdue = mean(|x| x.overdue_share);
        let _ = writeln!(
            s,
            "| {} | real runs: network delay applied; residual latency per message (mean, real / scenario), overdue messages; PE timer lateness; requests issued / unfinished after the drain; failures per run; wall time per run | | {:.0} ms; {residual:.3} ms / {residual_scenario:.2} ms, {:.2} %; {late:.2} ms; {issued} / {unfinished}; {:.1}; {wall:.0} s | | | | | | calibrated delay {:.2} ms | |",
            r.label,
            1e3 * r.params.network_delay,
            100.0 * overdue,
            r.real.failures.mean,
            1e3 * r.calibrated_delay,
        );
    }
    s
}

/// Runs `poolgate lab agree`.
pub fn run(a: &AgreeArgs) -> anyhow::Result<()> {
    let base = a.params.params()?;
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
        let residual = r
            .real
            .iter()
            .map(|x| x.message_lateness_scenario_ms / 1e3)
            .sum::<f64>()
            / r.real.len().max(1) as f64;
        let mut calibrated = p.clone();
        calibrated.network_delay += residual;
        eprintln!(
            "residual latency {:.2} ms (scenario) per message: simulating again with a network delay of {:.2} ms",
            1e3 * residual,
            1e3 * calibrated.network_delay
        );
        let (sim_calibrated, _) = runner::run_one(&calibrated, a.sim_seeds)?;
        rows.push(Comparison {
            label,
            params: p,
            sim,
            sim_runs,
            real: r.summary,
            real_runs: r.real,
            calibrated_delay: calibrated.network_delay,
            sim_calibrated,
        });
    }
    let md = markdown(&rows, a.sim_seeds, a.real_seeds, a.time_scale);
    print!("{md}");
    let agreeing = rows.iter().filter(|r| row_agrees(r)).count();
    eprintln!(
        "{agreeing} of {} points agree in every figure (criterion: the 95 % CIs overlap)",
        rows.len()
    );
    if let Some(f) = &a.markdown {
        std::fs::write(f, &md)?;
    }
    if let Some(f) = &a.json {
        std::fs::write(f, serde_json::to_string_pretty(&rows)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est(mean: f64, ci95: f64) -> Estimate {
        Estimate { mean, ci95, n: 3 }
    }

    #[test]
    fn figures_agree_when_the_intervals_overlap() {
        assert!(agrees(&est(83.2, 0.4), &est(82.5, 3.0)));
        assert!(agrees(&est(83.2, 0.4), &est(84.0, 0.4)));
        // The old real runs: 85.4 ± 2.5 against 81.3 ± 0.4.
        assert!(!agrees(&est(81.3, 0.4), &est(85.4, 2.5)));
        assert!(!agrees(&est(81.3, 0.4), &est(f64::NAN, f64::NAN)));
    }
}
