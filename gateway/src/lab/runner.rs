//! Runs points (a parameter set and a policy) over several seeds on worker
//! threads and summarises each point with 95 % confidence intervals.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use super::params::{ParamError, Params, PolicyChoice};
use super::sim::{self, RunResult};
use super::stats::Estimate;

/// One point of a sweep: the swept values, the policy, and the full parameters.
#[derive(Clone, Debug, Serialize)]
pub struct PointSpec {
    /// Value of the swept parameter (as given).
    pub value: String,
    /// Value of the series parameter, if the sweep has one.
    pub by_value: Option<String>,
    /// Policy.
    pub policy: PolicyChoice,
    /// Everything else.
    #[serde(skip)]
    pub params: Params,
}

/// Means and 95 % confidence intervals of one point over its seeds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// System utilisation (0..1), work done incl. re-processing.
    pub utilisation: Estimate,
    /// Handling speed, % of average PE capacity.
    pub handling_speed: Estimate,
    /// Handling delay, s.
    pub handling_delay: Estimate,
    /// Queuing delay at the PU, s.
    pub queuing_delay: Estimate,
    /// Startup delay (dequeued until accepted), s.
    pub startup_delay: Estimate,
    /// Processing time (accepted until complete), s.
    pub processing_time: Estimate,
    /// Work lost per request interrupted by a silent failure, calculations.
    pub lost_per_interrupted: Estimate,
    /// Share of the work done that was lost.
    pub lost_share: Estimate,
    /// PE failures per run.
    pub failures: Estimate,
    /// Failovers per run.
    pub failovers: Estimate,
    /// Registrar removals after a missed endpoint keep-alive, per run.
    pub keep_alive_removals: Estimate,
    /// Registrar removals by failure reports, per run.
    pub report_removals: Estimate,
    /// Rejected requests per run.
    pub rejects: Estimate,
    /// Requests completed per run.
    pub requests: Estimate,
}

impl Summary {
    /// Summarises runs of one point.
    pub fn of(runs: &[RunResult]) -> Self {
        let e = |f: fn(&RunResult) -> f64| Estimate::of(&runs.iter().map(f).collect::<Vec<_>>());
        Self {
            utilisation: e(|r| r.utilisation),
            handling_speed: e(|r| r.handling_speed),
            handling_delay: e(|r| r.handling_delay),
            queuing_delay: e(|r| r.queuing_delay),
            startup_delay: e(|r| r.startup_delay),
            processing_time: e(|r| r.processing_time),
            lost_per_interrupted: e(|r| r.lost_per_interrupted),
            lost_share: e(|r| r.lost_share),
            failures: e(|r| r.failures as f64),
            failovers: e(|r| r.failovers as f64),
            keep_alive_removals: e(|r| r.keep_alive_removals as f64),
            report_removals: e(|r| r.report_removals as f64),
            rejects: e(|r| r.rejects as f64),
            requests: e(|r| r.requests as f64),
        }
    }
}

/// A point with its runs and summary.
#[derive(Clone, Debug, Serialize)]
pub struct PointResult {
    /// What was run.
    #[serde(flatten)]
    pub spec: PointSpec,
    /// Summary over the seeds.
    pub summary: Summary,
    /// Every run, in seed order.
    pub runs: Vec<RunResult>,
    /// Real-time runs only: what else each run measured (drain, processes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub real: Vec<super::real::RealRun>,
}

/// Runs every point with seeds `0..seeds` on `threads` workers; `progress` is
/// called after each run with (runs done, runs total).
pub fn run_points(
    points: Vec<PointSpec>,
    seeds: u64,
    threads: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<PointResult>, ParamError> {
    for p in &points {
        p.params.validate()?;
    }
    let jobs: Vec<(usize, u64)> = (0..points.len())
        .flat_map(|i| (0..seeds).map(move |s| (i, s)))
        .collect();
    let results: Mutex<Vec<Vec<Option<RunResult>>>> =
        Mutex::new(points.iter().map(|_| vec![None; seeds as usize]).collect());
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let error: Mutex<Option<ParamError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(i, seed)) = jobs.get(k) else {
                    return;
                };
                // Seeds are shared across points: common random numbers make
                // policies and values comparable with fewer runs.
                match sim::run(&points[i].params, 1 + seed) {
                    Ok(r) => {
                        if let Ok(mut g) = results.lock() {
                            g[i][seed as usize] = Some(r);
                        }
                    }
                    Err(e) => {
                        if let Ok(mut g) = error.lock() {
                            *g = Some(e);
                        }
                    }
                }
                progress(done.fetch_add(1, Ordering::Relaxed) + 1, jobs.len());
            });
        }
    });
    if let Some(e) = error.into_inner().ok().flatten() {
        return Err(e);
    }
    let results = results.into_inner().unwrap_or_default();
    Ok(points
        .into_iter()
        .zip(results)
        .map(|(spec, runs)| {
            let runs: Vec<RunResult> = runs.into_iter().flatten().collect();
            PointResult {
                summary: Summary::of(&runs),
                spec,
                runs,
                real: Vec::new(),
            }
        })
        .collect())
}

/// Runs every point with seeds `0..seeds` in real time, one run after another
/// (each run uses the whole machine); `progress` as in [`run_points`].
pub fn run_points_real(
    points: Vec<PointSpec>,
    seeds: u64,
    opts: &super::real::RealOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> anyhow::Result<Vec<PointResult>> {
    for p in &points {
        p.params.validate()?;
    }
    let total = points.len() * seeds as usize;
    let mut done = 0;
    let mut out = Vec::new();
    for spec in points {
        let mut real = Vec::new();
        for seed in 0..seeds {
            let r = super::real::run(&spec.params, 1 + seed, opts)?;
            eprintln!(
                "\rseed {}: messages acted on {:.3} ms (real; {:.2} ms of scenario time) after \
                 their modelled arrival on average, {:.1} % overdue; PE timer lateness {:.3} ms",
                1 + seed,
                r.message_lateness_ms,
                r.message_lateness_scenario_ms,
                100.0 * r.overdue_share,
                r.pe_timer_lateness_ms
            );
            real.push(r);
            done += 1;
            progress(done, total);
        }
        let runs: Vec<RunResult> = real.iter().map(|r| r.result.clone()).collect();
        out.push(PointResult {
            summary: Summary::of(&runs),
            spec,
            runs,
            real,
        });
    }
    Ok(out)
}

/// Runs one parameter set over `seeds` seeds and summarises it (no threads, no progress).
pub fn run_one(params: &Params, seeds: u64) -> Result<(Summary, Vec<RunResult>), ParamError> {
    let spec = PointSpec {
        value: String::new(),
        by_value: None,
        policy: params.policy,
        params: params.clone(),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut r = run_points(vec![spec], seeds, threads, &|_, _| {})?;
    let p = r.remove(0);
    Ok((p.summary, p.runs))
}

/// A progress line on stderr: runs done, total, elapsed and estimated time left.
pub fn stderr_progress(label: String) -> impl Fn(usize, usize) + Sync {
    let start = Instant::now();
    move |done, total| {
        let el = start.elapsed().as_secs_f64();
        let left = if done > 0 {
            el / done as f64 * (total - done) as f64
        } else {
            0.0
        };
        let width = 30;
        let filled = done * width / total.max(1);
        eprint!(
            "\r{label} [{}{}] {done}/{total} runs, {el:.0}s, ~{left:.0}s left ",
            "#".repeat(filled),
            ".".repeat(width - filled)
        );
        if done == total {
            eprintln!();
        }
    }
}
