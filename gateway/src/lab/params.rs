//! The parameters of one lab scenario, their defaults (the paper's base setup)
//! and a by-name table so the command line and sweeps can set any of them.

use std::fmt;

use serde::Serialize;

/// Selection policy of the pool (what every PE registers with).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum PolicyChoice {
    /// Least Used (RFC 5356 §5.1): load = requests being handled.
    LeastUsed,
    /// Round Robin (RFC 5356 §4.1).
    RoundRobin,
    /// Random (RFC 5356 §4.3).
    Random,
}

impl PolicyChoice {
    /// Parses `lu`, `rr` or `random` (and the long names).
    pub fn parse(s: &str) -> Result<Self, ParamError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "lu" | "least-used" | "leastused" => Ok(Self::LeastUsed),
            "rr" | "round-robin" | "roundrobin" => Ok(Self::RoundRobin),
            "rand" | "random" => Ok(Self::Random),
            other => Err(ParamError::Value {
                name: "policy".into(),
                value: other.into(),
                why: "expected lu, rr or random",
            }),
        }
    }

    /// Parses a comma-separated list of policies.
    pub fn parse_list(s: &str) -> Result<Vec<Self>, ParamError> {
        s.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(Self::parse)
            .collect()
    }

    /// Short name (`lu`, `rr`, `random`).
    pub fn short(self) -> &'static str {
        match self {
            Self::LeastUsed => "lu",
            Self::RoundRobin => "rr",
            Self::Random => "random",
        }
    }
}

impl fmt::Display for PolicyChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short())
    }
}

/// A parameter name or value the lab does not understand.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// No parameter of that name.
    #[error("unknown parameter {0:?} (known: {known})", known = known_names())]
    Unknown(String),
    /// The value does not parse or is out of range.
    #[error("{name} = {value:?}: {why}")]
    Value {
        /// Parameter.
        name: String,
        /// Value given.
        value: String,
        /// What is wrong.
        why: &'static str,
    },
}

/// Everything that defines one simulated scenario (besides the seed).
///
/// Times are in seconds, work in calculations. Defaults are the base setup of
/// Dreibholz & Rathgeb's failure-handling studies.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Params {
    /// Pool elements (constant: a failed PE is replaced at once).
    pub pes: usize,
    /// Pool users per pool element.
    pub pu_pe_ratio: f64,
    /// PE capacity in calculations per second.
    pub capacity: f64,
    /// Average request size in calculations (negative-exponential).
    pub request_size: f64,
    /// Target system utilisation (0..1); sets the request interval.
    pub utilisation: f64,
    /// Session keep-alive interval of a PU (s).
    pub session_ka_interval: f64,
    /// Session keep-alive timeout of a PU (s).
    pub session_ka_timeout: f64,
    /// Endpoint keep-alive interval of the registrar (s).
    pub endpoint_ka_interval: f64,
    /// Endpoint keep-alive timeout of the registrar (s).
    pub endpoint_ka_timeout: f64,
    /// MAX-BAD-PE-REPORT; `None` = infinity (failure reports ignored).
    pub max_bad_pe_report: Option<u32>,
    /// Cookie (checkpoint) interval in calculations.
    pub cookie_interval: f64,
    /// One-way network delay between any two components (s).
    pub network_delay: f64,
    /// Scenario time (s).
    pub duration: f64,
    /// Start of the measurement window (s); the system fills up before it.
    pub warmup: f64,
    /// PE mean time between failures in average request handling times
    /// (request size / capacity); `None` = PEs never fail.
    pub mtbf: Option<f64>,
    /// PE MTBF in seconds; overrides `mtbf` when set (keeps the failure rate
    /// fixed while the request size changes).
    pub mtbf_seconds: Option<f64>,
    /// Share of failures that are silent (0..1); the rest are clean shutdowns.
    pub silent: f64,
    /// Abort and Restart: a failed-over request starts from zero (cookies unused).
    pub abort_restart: bool,
    /// Reject and Retry: a PE handling this many requests rejects the next (0 = never).
    pub max_jobs: usize,
    /// Pause before a PU selects again after a reject or a failed resolution (s).
    pub retry_delay: f64,
    /// PEs returned by one handle resolution (the registrar's max items).
    pub resolution_items: usize,
    /// PU handle-resolution cache staleness (s); small = ask the registrar every time.
    pub cache_staleness: f64,
    /// Pool policy.
    pub policy: PolicyChoice,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            pes: 10,
            pu_pe_ratio: 10.0,
            capacity: 1e6,
            request_size: 1e7,
            utilisation: 0.6,
            session_ka_interval: 1.0,
            session_ka_timeout: 1.0,
            endpoint_ka_interval: 1.0,
            endpoint_ka_timeout: 1.0,
            max_bad_pe_report: None,
            cookie_interval: 1e6,
            network_delay: 0.010,
            duration: 3600.0,
            warmup: 60.0,
            mtbf: None,
            mtbf_seconds: None,
            silent: 0.0,
            abort_restart: false,
            max_jobs: 0,
            retry_delay: 0.1,
            resolution_items: 1,
            cache_staleness: 0.001,
            policy: PolicyChoice::LeastUsed,
        }
    }
}

/// One settable parameter: name, help, and how to set it from text.
pub struct ParamSpec {
    /// Name on the command line (`--name`) and in sweeps.
    pub name: &'static str,
    /// One-line help.
    pub help: &'static str,
    set: fn(&mut Params, &str) -> Result<(), &'static str>,
    get: fn(&Params) -> String,
}

fn num(v: &str) -> Result<f64, &'static str> {
    let x: f64 = v.trim().parse().map_err(|_| "not a number")?;
    if !x.is_finite() {
        return Err("not a finite number");
    }
    Ok(x)
}

fn positive(v: &str) -> Result<f64, &'static str> {
    let x = num(v)?;
    if x <= 0.0 {
        return Err("must be positive");
    }
    Ok(x)
}

/// Seconds, with an optional `ms` or `s` suffix.
fn seconds(v: &str) -> Result<f64, &'static str> {
    let v = v.trim();
    if let Some(ms) = v.strip_suffix("ms") {
        return Ok(positive(ms)? / 1000.0);
    }
    positive(v.strip_suffix('s').unwrap_or(v))
}

/// A share: `0.6` or `60%`.
fn share(v: &str) -> Result<f64, &'static str> {
    let v = v.trim();
    let x = match v.strip_suffix('%') {
        Some(p) => num(p)? / 100.0,
        None => num(v)?,
    };
    if !(0.0..=1.0).contains(&x) {
        return Err("must be within 0..1 (or 0%..100%)");
    }
    Ok(x)
}

fn is_inf(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "inf" | "infinity" | "none" | "never"
    )
}

fn count(v: &str) -> Result<usize, &'static str> {
    v.trim().parse().map_err(|_| "not a whole number")
}

fn boolean(v: &str) -> Result<bool, &'static str> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected true/false"),
    }
}

fn fmt_opt<T: fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "inf".into(), ToString::to_string)
}

/// Every parameter the lab knows, in help order.
pub const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "pes",
        help: "pool elements (default 10)",
        set: |p, v| {
            p.pes = count(v)?;
            if p.pes == 0 {
                return Err("must be positive");
            }
            Ok(())
        },
        get: |p| p.pes.to_string(),
    },
    ParamSpec {
        name: "pu-pe-ratio",
        help: "pool users per pool element (default 10)",
        set: |p, v| {
            p.pu_pe_ratio = positive(v)?;
            Ok(())
        },
        get: |p| p.pu_pe_ratio.to_string(),
    },
    ParamSpec {
        name: "capacity",
        help: "PE capacity, calculations/s (default 1e6)",
        set: |p, v| {
            p.capacity = positive(v)?;
            Ok(())
        },
        get: |p| p.capacity.to_string(),
    },
    ParamSpec {
        name: "request-size",
        help: "average request size, calculations, neg-exp (default 1e7); the cookie interval keeps its share",
        set: |p, v| {
            let share = p.cookie_interval / p.request_size;
            p.request_size = positive(v)?;
            p.cookie_interval = share * p.request_size;
            Ok(())
        },
        get: |p| p.request_size.to_string(),
    },
    ParamSpec {
        name: "size-ratio",
        help: "request size : PE capacity (sets request-size; default 10)",
        set: |p, v| {
            let share = p.cookie_interval / p.request_size;
            p.request_size = positive(v)? * p.capacity;
            p.cookie_interval = share * p.request_size;
            Ok(())
        },
        get: |p| (p.request_size / p.capacity).to_string(),
    },
    ParamSpec {
        name: "utilisation",
        help: "target system utilisation, 0.6 or 60% (default 60%)",
        set: |p, v| {
            p.utilisation = share(v)?;
            if p.utilisation <= 0.0 {
                return Err("must be positive");
            }
            Ok(())
        },
        get: |p| p.utilisation.to_string(),
    },
    ParamSpec {
        name: "session-ka-interval",
        help: "PU session keep-alive interval, s or ms (default 1s)",
        set: |p, v| {
            p.session_ka_interval = seconds(v)?;
            Ok(())
        },
        get: |p| p.session_ka_interval.to_string(),
    },
    ParamSpec {
        name: "session-ka-timeout",
        help: "PU session keep-alive timeout (default 1s)",
        set: |p, v| {
            p.session_ka_timeout = seconds(v)?;
            Ok(())
        },
        get: |p| p.session_ka_timeout.to_string(),
    },
    ParamSpec {
        name: "endpoint-ka-interval",
        help: "registrar endpoint keep-alive interval (default 1s)",
        set: |p, v| {
            p.endpoint_ka_interval = seconds(v)?;
            Ok(())
        },
        get: |p| p.endpoint_ka_interval.to_string(),
    },
    ParamSpec {
        name: "endpoint-ka-timeout",
        help: "registrar endpoint keep-alive timeout (default 1s)",
        set: |p, v| {
            p.endpoint_ka_timeout = seconds(v)?;
            Ok(())
        },
        get: |p| p.endpoint_ka_timeout.to_string(),
    },
    ParamSpec {
        name: "max-bad-pe-report",
        help: "MAX-BAD-PE-REPORT, a count or inf (default inf: reports ignored)",
        set: |p, v| {
            p.max_bad_pe_report = if is_inf(v) {
                None
            } else {
                let n: u32 = v.trim().parse().map_err(|_| "not a count")?;
                if n == 0 {
                    return Err("must be at least 1");
                }
                Some(n)
            };
            Ok(())
        },
        get: |p| fmt_opt(&p.max_bad_pe_report),
    },
    ParamSpec {
        name: "cookie-interval",
        help: "cookie interval: calculations, or % of the request size (default 10%)",
        set: |p, v| {
            let v = v.trim();
            p.cookie_interval = match v.strip_suffix('%') {
                Some(pc) => positive(pc)? / 100.0 * p.request_size,
                None => positive(v)?,
            };
            Ok(())
        },
        get: |p| p.cookie_interval.to_string(),
    },
    ParamSpec {
        name: "network-delay",
        help: "one-way network delay between components, s or ms (default 10ms)",
        set: |p, v| {
            let v = v.trim();
            p.network_delay = if v == "0" { 0.0 } else { seconds(v)? };
            Ok(())
        },
        get: |p| p.network_delay.to_string(),
    },
    ParamSpec {
        name: "duration",
        help: "scenario time, s (default 3600)",
        set: |p, v| {
            p.duration = seconds(v)?;
            Ok(())
        },
        get: |p| p.duration.to_string(),
    },
    ParamSpec {
        name: "warmup",
        help: "start of the measurement window, s (default 60)",
        set: |p, v| {
            let v = v.trim();
            p.warmup = if v == "0" { 0.0 } else { seconds(v)? };
            Ok(())
        },
        get: |p| p.warmup.to_string(),
    },
    ParamSpec {
        name: "mtbf",
        help: "PE MTBF in average request handling times, or inf (default inf)",
        set: |p, v| {
            p.mtbf = if is_inf(v) { None } else { Some(positive(v)?) };
            Ok(())
        },
        get: |p| fmt_opt(&p.mtbf),
    },
    ParamSpec {
        name: "mtbf-s",
        help: "PE MTBF in seconds, overrides mtbf (default unset)",
        set: |p, v| {
            p.mtbf_seconds = if is_inf(v) { None } else { Some(seconds(v)?) };
            Ok(())
        },
        get: |p| fmt_opt(&p.mtbf_seconds),
    },
    ParamSpec {
        name: "silent",
        help: "share of failures that are silent, 0..1 (default 0: clean shutdowns)",
        set: |p, v| {
            p.silent = share(v)?;
            Ok(())
        },
        get: |p| p.silent.to_string(),
    },
    ParamSpec {
        name: "abort-restart",
        help: "Abort and Restart instead of resuming from the cookie (default false)",
        set: |p, v| {
            p.abort_restart = boolean(v)?;
            Ok(())
        },
        get: |p| p.abort_restart.to_string(),
    },
    ParamSpec {
        name: "max-jobs",
        help: "Reject and Retry: a PE with this many requests rejects more (default 0 = off)",
        set: |p, v| {
            p.max_jobs = count(v)?;
            Ok(())
        },
        get: |p| p.max_jobs.to_string(),
    },
    ParamSpec {
        name: "retry-delay",
        help: "PU pause before selecting again after a reject (default 100ms)",
        set: |p, v| {
            p.retry_delay = seconds(v)?;
            Ok(())
        },
        get: |p| p.retry_delay.to_string(),
    },
    ParamSpec {
        name: "resolution-items",
        help: "PEs per handle resolution (default 1: the registrar's policy decides)",
        set: |p, v| {
            p.resolution_items = count(v)?;
            if !(1..=pool_core::wire::MAX_RESOLUTION_PES).contains(&p.resolution_items) {
                return Err("out of range");
            }
            Ok(())
        },
        get: |p| p.resolution_items.to_string(),
    },
    ParamSpec {
        name: "cache-staleness",
        help: "PU handle-resolution cache staleness (default 1ms)",
        set: |p, v| {
            p.cache_staleness = seconds(v)?;
            Ok(())
        },
        get: |p| p.cache_staleness.to_string(),
    },
    ParamSpec {
        name: "policy",
        help: "pool policy: lu, rr or random (default lu)",
        set: |p, v| {
            p.policy = PolicyChoice::parse(v).map_err(|_| "expected lu, rr or random")?;
            Ok(())
        },
        get: |p| p.policy.to_string(),
    },
];

fn known_names() -> String {
    PARAMS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
}

fn spec(name: &str) -> Result<&'static ParamSpec, ParamError> {
    let norm = name.trim().trim_start_matches("--").replace('_', "-");
    PARAMS
        .iter()
        .find(|s| s.name == norm)
        .ok_or_else(|| ParamError::Unknown(name.into()))
}

impl Params {
    /// Sets parameter `name` from its textual `value`.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ParamError> {
        let s = spec(name)?;
        (s.set)(self, value).map_err(|why| ParamError::Value {
            name: s.name.into(),
            value: value.into(),
            why,
        })
    }

    /// The current value of parameter `name`, as text.
    pub fn get(&self, name: &str) -> Result<String, ParamError> {
        Ok((spec(name)?.get)(self))
    }

    /// The canonical name of a parameter (accepts `_` for `-` and a leading `--`).
    pub fn canonical(name: &str) -> Result<&'static str, ParamError> {
        Ok(spec(name)?.name)
    }

    /// Pool users in the scenario.
    pub fn pus(&self) -> usize {
        (self.pes as f64 * self.pu_pe_ratio).round().max(1.0) as usize
    }

    /// Average time between two requests of one PU (s), from the target utilisation:
    /// utilisation = PU:PE ratio · request size / request interval / capacity.
    pub fn request_interval(&self) -> f64 {
        self.pu_pe_ratio * self.request_size / (self.utilisation * self.capacity)
    }

    /// Average request handling time (request size / capacity), the MTBF unit (s).
    pub fn handling_time(&self) -> f64 {
        self.request_size / self.capacity
    }

    /// Mean PE lifetime in seconds, if PEs fail.
    pub fn mtbf_secs(&self) -> Option<f64> {
        self.mtbf_seconds
            .or_else(|| self.mtbf.map(|m| m * self.handling_time()))
    }

    /// Checks cross-parameter constraints.
    pub fn validate(&self) -> Result<(), ParamError> {
        let bad = |name: &str, why| ParamError::Value {
            name: name.into(),
            value: String::new(),
            why,
        };
        if self.warmup >= self.duration {
            return Err(bad("warmup", "must be below the duration"));
        }
        if self.session_ka_timeout <= 2.0 * self.network_delay {
            return Err(bad(
                "session-ka-timeout",
                "must exceed the round trip (2 x network delay)",
            ));
        }
        if self.endpoint_ka_timeout <= 2.0 * self.network_delay {
            return Err(bad(
                "endpoint-ka-timeout",
                "must exceed the round trip (2 x network delay)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_papers_base_setup() {
        let p = Params::default();
        assert_eq!(p.pus(), 100);
        // 10 · 1e7 / (0.6 · 1e6) s between requests of one PU.
        assert!((p.request_interval() - 166.666_666).abs() < 1e-3);
        assert_eq!(p.handling_time(), 10.0);
        assert_eq!(p.cookie_interval, 0.1 * p.request_size);
    }

    #[test]
    fn set_by_name_parses_units_and_infinity() {
        let mut p = Params::default();
        p.set("--session_ka_interval", "250ms").unwrap();
        assert_eq!(p.session_ka_interval, 0.25);
        p.set("utilisation", "40%").unwrap();
        assert_eq!(p.utilisation, 0.4);
        p.set("mtbf", "inf").unwrap();
        assert_eq!(p.mtbf, None);
        p.set("max-bad-pe-report", "1").unwrap();
        assert_eq!(p.max_bad_pe_report, Some(1));
        p.set("cookie-interval", "50%").unwrap();
        assert_eq!(p.cookie_interval, 5e6);
        p.set("size-ratio", "1").unwrap();
        assert_eq!((p.request_size, p.cookie_interval), (1e6, 5e5));
        assert!(matches!(p.set("nope", "1"), Err(ParamError::Unknown(_))));
        assert!(p.set("silent", "1.5").is_err());
        assert!(p.set("pes", "0").is_err());
        assert_eq!(p.get("policy").unwrap(), "lu");
    }
}
