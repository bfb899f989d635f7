//! `poolgate lab` on the command line: `run`, `sweep`, `cookie-interval`, `agree`
//! and the hidden `pe` (one PE process of a real-time run).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Arg, ArgMatches, Args, FromArgMatches, Subcommand};

use super::cookie;
use super::params::{ParamError, Params, PolicyChoice, PARAMS};
use super::real::RealOptions;
use super::report::Sweep;
use super::runner::{self, PointSpec};

/// `poolgate lab`: the failure-handling lab (CalcApp workload in simulated or real time).
#[derive(Debug, Args)]
pub struct LabArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: LabCommand,
}

/// The lab's subcommands.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Run one scenario (per policy) over several seeds and print the summary.
    Run(RunArgs),
    /// Sweep one parameter (optionally against a second) and the policies.
    Sweep(SweepArgs),
    /// The cookie interval that loses at most 1 - G of the work to failures.
    CookieInterval(CookieArgs),
    /// Run a few points both simulated and in real time and show whether they agree.
    Agree(super::agree::AgreeArgs),
    /// One pool element of a real-time run (started by the lab itself).
    #[command(hide = true)]
    Pe(super::real::pe::PeArgs),
}

/// Any scenario parameter as `--name value` (see `poolgate lab run --help`).
#[derive(Clone, Debug, Default)]
pub struct ParamArgs {
    /// (name, value) pairs given, in table order.
    pub values: Vec<(&'static str, String)>,
}

impl FromArgMatches for ParamArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut s = Self::default();
        s.update_from_arg_matches(m)?;
        Ok(s)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        for spec in PARAMS {
            if let Some(v) = m.get_one::<String>(spec.name) {
                self.values.push((spec.name, v.clone()));
            }
        }
        Ok(())
    }
}

impl Args for ParamArgs {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        for spec in PARAMS {
            cmd = cmd.arg(
                Arg::new(spec.name)
                    .long(spec.name)
                    .value_name("VALUE")
                    .help(spec.help)
                    .help_heading("Scenario parameters"),
            );
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl ParamArgs {
    /// The defaults with the given values applied.
    pub fn params(&self) -> Result<Params, ParamError> {
        let mut p = Params::default();
        for (name, v) in &self.values {
            p.set(name, v)?;
        }
        Ok(p)
    }
}

/// Options shared by `run` and `sweep`.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Policies to compare, comma-separated (lu, rr, random).
    #[arg(long, default_value = "lu,rr,random")]
    pub policies: String,
    /// Independent runs (seeds) per point.
    #[arg(long, default_value_t = 5)]
    pub seeds: u64,
    /// Worker threads (default: available cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Write PREFIX.csv, PREFIX.json and PREFIX.svg.
    #[arg(long, value_name = "PREFIX")]
    pub out: Option<PathBuf>,
    /// Also write the summary as a Markdown table to this file.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Title of the table and plot.
    #[arg(long)]
    pub title: Option<String>,
    /// Real time: a registrar, PE processes and PUs on loopback over SCTP instead of
    /// the simulation (runs one after another; seeds = runs per point).
    #[arg(long)]
    pub real: bool,
    /// Real time: real seconds per scenario second (0.01: 1 s of scenario = 10 ms).
    #[arg(long, default_value_t = 0.01, value_name = "SCALE")]
    pub time_scale: f64,
    /// Real time: longest drain after the scenario (scenario seconds) while the PUs
    /// finish their queues.
    #[arg(long, default_value_t = 600.0, value_name = "SECONDS")]
    pub drain: f64,
}

/// `poolgate lab run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Scenario parameters.
    #[command(flatten)]
    pub params: ParamArgs,
}

/// `poolgate lab sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Parameter to sweep (any scenario parameter, e.g. mtbf).
    #[arg(long = "param", value_name = "NAME")]
    pub sweep_param: String,
    /// Its values, comma-separated.
    #[arg(long, value_name = "V1,V2,...")]
    pub values: String,
    /// A second parameter: one line per value (and policy).
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
    /// Values of the second parameter.
    #[arg(long, value_name = "V1,V2,...", requires = "by")]
    pub by_values: Option<String>,
    /// Shared options.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Scenario parameters (the base every point starts from).
    #[command(flatten)]
    pub params: ParamArgs,
}

/// `poolgate lab cookie-interval`.
#[derive(Debug, Args)]
pub struct CookieArgs {
    /// PE mean time between failures, seconds.
    #[arg(long)]
    pub mtbf: f64,
    /// PE capacity, calculations/s.
    #[arg(long, default_value_t = 1e6)]
    pub capacity: f64,
    /// Target goodput: share of the work that must not be lost (e.g. 0.99).
    #[arg(long)]
    pub goodput: f64,
    /// Average request size, calculations (for cookies per request).
    #[arg(long, default_value_t = 1e7)]
    pub request_size: f64,
}

/// Runs `poolgate lab ...`.
pub fn run(args: &LabArgs) -> ExitCode {
    if let (Ok(level), false) = (
        std::env::var("POOLGATE_LAB_LOG"),
        matches!(args.command, LabCommand::Pe(_)),
    ) {
        let _ = crate::telemetry::logging::init(crate::telemetry::LogFormat::Human, &level);
    }
    let r = match &args.command {
        LabCommand::Run(a) => run_sweep(None, None, &a.common, &a.params),
        LabCommand::Sweep(a) => match (&a.by, &a.by_values) {
            (Some(_), None) => Err(anyhow::anyhow!("--by needs --by-values")),
            (by, by_values) => run_sweep(
                Some((a.sweep_param.clone(), a.values.clone())),
                by.clone().zip(by_values.clone()),
                &a.common,
                &a.params,
            ),
        },
        LabCommand::CookieInterval(a) => cookie_interval(a),
        LabCommand::Agree(a) => super::agree::run(a),
        LabCommand::Pe(a) => return super::real::pe::main(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

fn run_sweep(
    sweep: Option<(String, String)>,
    by: Option<(String, String)>,
    common: &CommonArgs,
    params: &ParamArgs,
) -> anyhow::Result<()> {
    let base = params.params()?;
    let policies = PolicyChoice::parse_list(&common.policies)?;
    if policies.is_empty() {
        anyhow::bail!("no policy given");
    }
    if common.seeds == 0 {
        anyhow::bail!("--seeds must be at least 1");
    }
    let (param, values) = match &sweep {
        Some((p, v)) => (Params::canonical(p)?.to_string(), list(v)),
        None => (String::new(), vec![String::new()]),
    };
    if values.is_empty() {
        anyhow::bail!("no values to sweep");
    }
    let (by_param, by_values) = match &by {
        Some((p, v)) => (Some(Params::canonical(p)?.to_string()), list(v)),
        None => (None, Vec::new()),
    };
    let mut points = Vec::new();
    for value in &values {
        let by_iter: Vec<Option<&String>> = if by_values.is_empty() {
            vec![None]
        } else {
            by_values.iter().map(Some).collect()
        };
        for bv in by_iter {
            for &policy in &policies {
                let mut p = base.clone();
                // The series parameter first, so that a swept share (e.g. the
                // cookie interval in %) applies to the series' request size.
                if let (Some(b), Some(v)) = (&by_param, bv) {
                    p.set(b, v)?;
                }
                if !param.is_empty() {
                    p.set(&param, value)?;
                }
                p.policy = policy;
                p.validate()?;
                points.push(PointSpec {
                    value: value.clone(),
                    by_value: bv.cloned(),
                    policy,
                    params: p,
                });
            }
        }
    }
    let threads = common
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let title = common.title.clone().unwrap_or_else(|| {
        if param.is_empty() {
            "poolgate lab run".into()
        } else {
            match &by_param {
                Some(b) => format!("{param} sweep, lines by {b}"),
                None => format!("{param} sweep"),
            }
        }
    });
    let progress = runner::stderr_progress(title.clone());
    let results = if common.real {
        let mut opts = RealOptions::new(common.time_scale)?;
        opts.drain = common.drain;
        runner::run_points_real(points, common.seeds, &opts, &progress)?
    } else {
        runner::run_points(points, common.seeds, threads, &progress)?
    };
    let sweep = Sweep {
        title,
        param,
        values,
        by: by_param,
        by_values,
        policies,
        seeds: common.seeds,
        base,
        points: results,
    };
    print!("{}", sweep.table());
    if let Some(prefix) = &common.out {
        if let Some(dir) = prefix.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let with = |ext: &str| {
            let mut s = prefix.as_os_str().to_owned();
            s.push(ext);
            PathBuf::from(s)
        };
        std::fs::write(with(".csv"), sweep.csv())?;
        std::fs::write(with(".json"), sweep.json())?;
        std::fs::write(with(".svg"), sweep.svg())?;
        eprintln!("wrote {}.{{csv,json,svg}}", prefix.display());
    }
    if let Some(md) = &common.markdown {
        std::fs::write(md, sweep.markdown())?;
    }
    Ok(())
}

fn cookie_interval(a: &CookieArgs) -> anyhow::Result<()> {
    if !(a.mtbf > 0.0 && a.capacity > 0.0 && a.request_size > 0.0) {
        anyhow::bail!("--mtbf, --capacity and --request-size must be positive");
    }
    if !(0.0..1.0).contains(&a.goodput) {
        anyhow::bail!("--goodput must be within [0, 1)");
    }
    let c = cookie::advise(a.mtbf, a.capacity, a.goodput, a.request_size);
    println!(
        "cookie interval: {:.0} calculations (2 * MTBF {} s * capacity {} calc/s * (1 - goodput {}))",
        c.interval, a.mtbf, a.capacity, a.goodput
    );
    println!(
        "= {:.1} % of a request of {} calculations: {:.2} cookies per request",
        100.0 * c.share_of_request,
        a.request_size,
        c.cookies_per_request
    );
    println!(
        "(MTBF = {:.1} average request handling times; work lost per failure is about half an interval)",
        c.mtbf_in_requests
    );
    Ok(())
}
