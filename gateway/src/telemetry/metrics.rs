//! A small Prometheus metrics registry with text exposition (format 0.0.4).
//!
//! Registration and label lookup take a lock (do them once, keep the handle);
//! updating a handle is a single atomic operation, so the data path never blocks.
//! Series per family are capped, so label values from the network cannot grow
//! memory without bound.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most label combinations (series) one family may hold.
pub const MAX_SERIES_PER_FAMILY: usize = 10_000;

/// Default histogram buckets for latencies in seconds (100 µs .. 10 s).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Errors of registration and label lookup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// Metric names match `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    #[error("invalid metric name `{0}`")]
    BadName(String),
    /// Label names match `[a-zA-Z_][a-zA-Z0-9_]*` and do not start with `__`.
    #[error("invalid label name `{0}`")]
    BadLabel(String),
    /// The name is registered already.
    #[error("metric `{0}` is already registered")]
    Duplicate(String),
    /// Wrong number of label values.
    #[error("metric `{name}` has {want} label(s), got {got} value(s)")]
    LabelCount {
        /// Family name.
        name: String,
        /// Labels declared.
        want: usize,
        /// Values given.
        got: usize,
    },
    /// The family holds [`MAX_SERIES_PER_FAMILY`] series already.
    #[error("metric `{0}` has too many label combinations")]
    TooManySeries(String),
    /// Histogram buckets must be finite and strictly increasing.
    #[error("histogram `{0}` needs finite, strictly increasing buckets")]
    BadBuckets(String),
}

/// A monotonically increasing count.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Add one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Add `n`.
    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    /// Sets the count to `n`, a monotonic count kept elsewhere (a [`Collector`] copies
    /// it at scrape time); never lowers it, so a scrape never sees a counter reset.
    pub fn mirror(&self, n: u64) {
        self.0.fetch_max(n, Ordering::Relaxed);
    }
}

/// A value that goes up and down (stored as f64 bits).
#[derive(Clone, Debug)]
pub struct Gauge(Arc<AtomicU64>);

impl Default for Gauge {
    fn default() -> Self {
        Gauge(Arc::new(AtomicU64::new(0f64.to_bits())))
    }
}

impl Gauge {
    /// Set the value.
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    /// Add `d` (negative to subtract).
    pub fn add(&self, d: f64) {
        add_f64(&self.0, d);
    }
    /// Add one.
    pub fn inc(&self) {
        self.add(1.0);
    }
    /// Subtract one.
    pub fn dec(&self) {
        self.add(-1.0);
    }
    /// Current value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

fn add_f64(cell: &AtomicU64, d: f64) {
    let mut cur = cell.load(Ordering::Relaxed);
    loop {
        let new = (f64::from_bits(cur) + d).to_bits();
        match cell.compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(actual) => cur = actual,
        }
    }
}

#[derive(Debug)]
struct HistogramCore {
    bounds: Arc<[f64]>,
    /// Per-bucket (not cumulative) counts; the last is the +Inf bucket.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
    count: AtomicU64,
}

/// A distribution of observed values in fixed buckets.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramCore>);

impl Histogram {
    fn new(bounds: Arc<[f64]>) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram(Arc::new(HistogramCore {
            bounds,
            counts,
            sum: AtomicU64::new(0f64.to_bits()),
            count: AtomicU64::new(0),
        }))
    }

    /// Record one value.
    pub fn observe(&self, v: f64) {
        let h = &self.0;
        // Buckets are few and sorted; a linear scan beats a binary search here.
        let i = h
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(h.bounds.len());
        h.counts[i].fetch_add(1, Ordering::Relaxed);
        add_f64(&h.sum, v);
        h.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Record a duration in seconds.
    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }

    /// Sum of observations.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.0.sum.load(Ordering::Relaxed))
    }
}

/// What a family holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Type {
    Counter,
    Gauge,
    Histogram,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
            Type::Histogram => "histogram",
        }
    }
}

#[derive(Clone, Debug)]
enum Series {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    kind: Type,
    labels: Vec<String>,
    buckets: Arc<[f64]>,
    series: Mutex<HashMap<Vec<String>, Series>>,
}

impl Family {
    fn series(&self, values: &[&str]) -> Result<Series, MetricsError> {
        if values.len() != self.labels.len() {
            return Err(MetricsError::LabelCount {
                name: self.name.clone(),
                want: self.labels.len(),
                got: values.len(),
            });
        }
        let key: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let mut map = self.series.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(&key) {
            return Ok(s.clone());
        }
        if map.len() >= MAX_SERIES_PER_FAMILY {
            return Err(MetricsError::TooManySeries(self.name.clone()));
        }
        let s = match self.kind {
            Type::Counter => Series::Counter(Counter::default()),
            Type::Gauge => Series::Gauge(Gauge::default()),
            Type::Histogram => Series::Histogram(Histogram::new(self.buckets.clone())),
        };
        map.insert(key, s.clone());
        Ok(s)
    }
}

macro_rules! vec_type {
    ($(#[$doc:meta])* $name:ident, $series:ident, $variant:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name(Arc<Family>);

        impl $name {
            /// The series for these label values (in declaration order). Keep the
            /// handle: this lookup takes a lock, updating the handle does not.
            pub fn with(&self, values: &[&str]) -> Result<$series, MetricsError> {
                match self.0.series(values)? {
                    Series::$variant(s) => Ok(s),
                    _ => unreachable!("a family only creates series of its own type"),
                }
            }
        }
    };
}

vec_type!(
    /// A counter family with labels.
    CounterVec, Counter, Counter
);
vec_type!(
    /// A gauge family with labels.
    GaugeVec, Gauge, Gauge
);
vec_type!(
    /// A histogram family with labels.
    HistogramVec, Histogram, Histogram
);

/// Produces a role's status document (JSON) for `GET /status`.
pub type StatusProvider = Arc<dyn Fn() -> String + Send + Sync>;

/// Copies values kept elsewhere (a transport's counters) into their series just before
/// a scrape renders them. Returns false once its source is gone; it is then dropped.
pub type Collector = Box<dyn Fn() -> bool + Send + Sync>;

/// The set of metric families a process exposes, and the role's status document.
#[derive(Default)]
pub struct Registry {
    families: Mutex<Vec<Arc<Family>>>,
    status: Mutex<Option<StatusProvider>>,
    collectors: Mutex<Vec<Collector>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

fn valid_metric_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(n: &str) -> bool {
    let mut chars = n.chars();
    !n.starts_with("__")
        && n != "le"
        && matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// Sets what `GET /status` answers (a JSON document, e.g. the handlespace).
    pub fn set_status_provider(&self, provider: StatusProvider) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = Some(provider);
    }

    /// The role's status document, if the role provides one.
    pub fn status_json(&self) -> Option<String> {
        let provider = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        provider.map(|f| f())
    }

    /// Runs `collector` before every render (see [`Collector`]).
    pub fn add_collector(&self, collector: Collector) {
        self.collectors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(collector);
    }

    fn collect(&self) {
        self.collectors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|c| c());
    }

    /// The counter family `name` if it is registered with these labels, else a new one.
    /// For families that several parts of a process fill, each under its own label
    /// value (one per transport, say); a family of another type or labels is an error.
    pub fn shared_counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<CounterVec, MetricsError> {
        self.shared(name, help, Type::Counter, labels)
            .map(CounterVec)
    }

    /// [`Registry::shared_counter_vec`] for gauges.
    pub fn shared_gauge_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<GaugeVec, MetricsError> {
        self.shared(name, help, Type::Gauge, labels).map(GaugeVec)
    }

    fn shared(
        &self,
        name: &str,
        help: &str,
        kind: Type,
        labels: &[&str],
    ) -> Result<Arc<Family>, MetricsError> {
        let existing = self
            .families
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|f| f.name == name)
            .cloned();
        match existing {
            Some(f) if f.kind == kind && f.labels.iter().eq(labels.iter()) => Ok(f),
            Some(_) => Err(MetricsError::Duplicate(name.to_string())),
            None => match self.register(name, help, kind, labels, &[]) {
                // Registered by another caller in between: take theirs.
                Err(MetricsError::Duplicate(_)) => self.shared(name, help, kind, labels),
                r => r,
            },
        }
    }

    fn register(
        &self,
        name: &str,
        help: &str,
        kind: Type,
        labels: &[&str],
        buckets: &[f64],
    ) -> Result<Arc<Family>, MetricsError> {
        if !valid_metric_name(name) {
            return Err(MetricsError::BadName(name.to_string()));
        }
        if let Some(bad) = labels.iter().find(|l| !valid_label_name(l)) {
            return Err(MetricsError::BadLabel(bad.to_string()));
        }
        if kind == Type::Histogram
            && (buckets.is_empty()
                || buckets.iter().any(|b| !b.is_finite())
                || buckets.windows(2).any(|w| w[0] >= w[1]))
        {
            return Err(MetricsError::BadBuckets(name.to_string()));
        }
        let mut fams = self.families.lock().unwrap_or_else(|p| p.into_inner());
        if fams.iter().any(|f| f.name == name) {
            return Err(MetricsError::Duplicate(name.to_string()));
        }
        let fam = Arc::new(Family {
            name: name.to_string(),
            help: help.to_string(),
            kind,
            labels: labels.iter().map(|l| l.to_string()).collect(),
            buckets: buckets.into(),
            series: Mutex::new(HashMap::new()),
        });
        fams.push(fam.clone());
        Ok(fam)
    }

    /// Register a counter without labels (name it `..._total`).
    pub fn counter(&self, name: &str, help: &str) -> Result<Counter, MetricsError> {
        self.counter_vec(name, help, &[])?.with(&[])
    }

    /// Register a counter family with labels.
    pub fn counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<CounterVec, MetricsError> {
        self.register(name, help, Type::Counter, labels, &[])
            .map(CounterVec)
    }

    /// Register a gauge without labels.
    pub fn gauge(&self, name: &str, help: &str) -> Result<Gauge, MetricsError> {
        self.gauge_vec(name, help, &[])?.with(&[])
    }

    /// Register a gauge family with labels.
    pub fn gauge_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<GaugeVec, MetricsError> {
        self.register(name, help, Type::Gauge, labels, &[])
            .map(GaugeVec)
    }

    /// Register a histogram without labels; `buckets` are upper bounds, increasing.
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> Result<Histogram, MetricsError> {
        self.histogram_vec(name, help, &[], buckets)?.with(&[])
    }

    /// Register a histogram family with labels.
    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> Result<HistogramVec, MetricsError> {
        self.register(name, help, Type::Histogram, labels, buckets)
            .map(HistogramVec)
    }

    /// Everything in Prometheus text exposition format 0.0.4. Families appear in
    /// registration order, series sorted by label values (stable output).
    pub fn render(&self) -> String {
        self.collect();
        let fams: Vec<Arc<Family>> = self
            .families
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut out = String::new();
        for f in fams {
            let mut series: Vec<(Vec<String>, Series)> = {
                let map = f.series.lock().unwrap_or_else(|p| p.into_inner());
                map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            };
            series.sort_by(|a, b| a.0.cmp(&b.0));
            let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(&f.help));
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.as_str());
            for (values, s) in series {
                let labels = render_labels(&f.labels, &values, None);
                match s {
                    Series::Counter(c) => {
                        let _ = writeln!(out, "{}{labels} {}", f.name, c.get());
                    }
                    Series::Gauge(g) => {
                        let _ = writeln!(out, "{}{labels} {}", f.name, fmt_f64(g.get()));
                    }
                    Series::Histogram(h) => {
                        let mut cumulative = 0u64;
                        for (i, c) in h.0.counts.iter().enumerate() {
                            cumulative += c.load(Ordering::Relaxed);
                            let le =
                                h.0.bounds
                                    .get(i)
                                    .map_or_else(|| "+Inf".to_string(), |b| fmt_f64(*b));
                            let l = render_labels(&f.labels, &values, Some(&le));
                            let _ = writeln!(out, "{}_bucket{l} {cumulative}", f.name);
                        }
                        let _ = writeln!(out, "{}_sum{labels} {}", f.name, fmt_f64(h.sum()));
                        // The count is the +Inf bucket; print that so the two always agree.
                        let _ = writeln!(out, "{}_count{labels} {cumulative}", f.name);
                    }
                }
            }
        }
        out
    }
}

fn render_labels(names: &[String], values: &[String], le: Option<&str>) -> String {
    if names.is_empty() && le.is_none() {
        return String::new();
    }
    let mut out = String::from("{");
    let mut first = true;
    for (n, v) in names.iter().zip(values) {
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "{n}=\"{}\"", escape_label(v));
    }
    if let Some(le) = le {
        if !first {
            out.push(',');
        }
        let _ = write!(out, "le=\"{le}\"");
    }
    out.push('}');
    out
}

/// Label values escape backslash, double quote and newline.
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text escapes backslash and newline.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Floats as Prometheus reads them: `+Inf`, `-Inf`, `NaN`, otherwise shortest exact.
fn fmt_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn collectors_fill_shared_families_at_render_and_leave_when_their_source_goes() {
        let r = Registry::new();
        let a = r
            .shared_counter_vec("x_total", "X.", &["transport"])
            .unwrap();
        let b = r
            .shared_counter_vec("x_total", "X.", &["transport"])
            .unwrap();
        assert!(matches!(
            r.shared_gauge_vec("x_total", "X.", &["transport"]),
            Err(MetricsError::Duplicate(_))
        ));
        assert!(matches!(
            r.shared_counter_vec("x_total", "X.", &["other"]),
            Err(MetricsError::Duplicate(_))
        ));
        let source = Arc::new(AtomicU64::new(5));
        let (ca, cb) = (a.with(&["a"]).unwrap(), b.with(&["b"]).unwrap());
        let weak = Arc::downgrade(&source);
        r.add_collector(Box::new(move || {
            let Some(s) = weak.upgrade() else {
                return false;
            };
            ca.mirror(s.load(Ordering::Relaxed));
            cb.mirror(1);
            true
        }));
        assert!(r.render().contains("x_total{transport=\"a\"} 5\n"));
        source.store(9, Ordering::Relaxed);
        let text = r.render();
        assert!(text.contains("x_total{transport=\"a\"} 9\n"), "{text}");
        assert!(text.contains("x_total{transport=\"b\"} 1\n"), "{text}");
        // A mirrored counter never goes backwards.
        source.store(3, Ordering::Relaxed);
        assert!(r.render().contains("x_total{transport=\"a\"} 9\n"));
        drop(source);
        r.render();
        assert!(r.collectors.lock().unwrap().is_empty());
    }

    #[test]
    fn exposition_format_is_exact() {
        let r = Registry::new();
        let c = r
            .counter_vec(
                "poolgate_sessions_total",
                "Sessions opened.",
                &["role", "listener"],
            )
            .unwrap();
        c.with(&["ppu", "b"]).unwrap().inc_by(2);
        c.with(&["ppu", "a"]).unwrap().inc();
        let g = r
            .gauge("poolgate_up", "1 when serving.\nSecond line \\ here")
            .unwrap();
        g.set(1.0);
        let h = r
            .histogram("poolgate_rtt_seconds", "Round trip.", &[0.1, 1.0])
            .unwrap();
        h.observe(0.05);
        h.observe(0.5);
        h.observe(7.0);
        let text = r.render();
        let expected = "\
# HELP poolgate_sessions_total Sessions opened.
# TYPE poolgate_sessions_total counter
poolgate_sessions_total{role=\"ppu\",listener=\"a\"} 1
poolgate_sessions_total{role=\"ppu\",listener=\"b\"} 2
# HELP poolgate_up 1 when serving.\\nSecond line \\\\ here
# TYPE poolgate_up gauge
poolgate_up 1
# HELP poolgate_rtt_seconds Round trip.
# TYPE poolgate_rtt_seconds histogram
poolgate_rtt_seconds_bucket{le=\"0.1\"} 1
poolgate_rtt_seconds_bucket{le=\"1\"} 2
poolgate_rtt_seconds_bucket{le=\"+Inf\"} 3
poolgate_rtt_seconds_sum 7.55
poolgate_rtt_seconds_count 3
";
        assert_eq!(text, expected);
    }

    #[test]
    fn label_values_are_escaped() {
        let r = Registry::new();
        let c = r.counter_vec("x_total", "x", &["v"]).unwrap();
        c.with(&["a\"b\\c\nd"]).unwrap().inc();
        assert!(
            r.render().contains("x_total{v=\"a\\\"b\\\\c\\nd\"} 1\n"),
            "{}",
            r.render()
        );
    }

    #[test]
    fn histogram_labels_put_le_last() {
        let r = Registry::new();
        let h = r.histogram_vec("h_seconds", "h", &["op"], &[1.0]).unwrap();
        h.with(&["get"]).unwrap().observe(0.5);
        let text = r.render();
        assert!(
            text.contains("h_seconds_bucket{op=\"get\",le=\"1\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("h_seconds_count{op=\"get\"} 1\n"), "{text}");
    }

    #[test]
    fn registration_errors() {
        let r = Registry::new();
        assert_eq!(
            r.counter("9bad", "").unwrap_err(),
            MetricsError::BadName("9bad".into())
        );
        assert!(matches!(
            r.counter_vec("ok", "", &["__x"]),
            Err(MetricsError::BadLabel(_))
        ));
        assert!(matches!(
            r.counter_vec("ok2", "", &["le"]),
            Err(MetricsError::BadLabel(_))
        ));
        r.counter("dup", "").unwrap();
        assert_eq!(
            r.gauge("dup", "").unwrap_err(),
            MetricsError::Duplicate("dup".into())
        );
        assert!(matches!(
            r.histogram("h", "", &[1.0, 1.0]),
            Err(MetricsError::BadBuckets(_))
        ));
        assert!(matches!(
            r.histogram("h2", "", &[f64::NAN]),
            Err(MetricsError::BadBuckets(_))
        ));
        let v = r.counter_vec("v", "", &["a"]).unwrap();
        assert!(matches!(
            v.with(&[]),
            Err(MetricsError::LabelCount {
                want: 1,
                got: 0,
                ..
            })
        ));
    }

    #[test]
    fn series_are_capped() {
        let r = Registry::new();
        let v = r.counter_vec("many_total", "", &["k"]).unwrap();
        for i in 0..MAX_SERIES_PER_FAMILY {
            v.with(&[&i.to_string()]).unwrap();
        }
        assert!(matches!(
            v.with(&["one-more"]),
            Err(MetricsError::TooManySeries(_))
        ));
        // Existing series stay reachable.
        v.with(&["0"]).unwrap().inc();
    }

    #[test]
    fn handles_share_state_and_gauges_add_concurrently() {
        let r = Registry::new();
        let g = r.gauge("g", "").unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let g = g.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| g.inc()))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(g.get(), 4000.0);
        g.dec();
        assert!(r.render().contains("g 3999\n"));
    }

    #[test]
    fn special_floats() {
        assert_eq!(fmt_f64(f64::INFINITY), "+Inf");
        assert_eq!(fmt_f64(f64::NEG_INFINITY), "-Inf");
        assert_eq!(fmt_f64(f64::NAN), "NaN");
        assert_eq!(fmt_f64(0.25), "0.25");
    }

    proptest! {
        #[test]
        fn histogram_buckets_are_cumulative_and_count_matches(values in proptest::collection::vec(-10.0f64..100.0, 0..200)) {
            let r = Registry::new();
            let h = r.histogram("p", "", LATENCY_BUCKETS).unwrap();
            for v in &values { h.observe(*v); }
            let text = r.render();
            let mut last = 0u64;
            for line in text.lines().filter(|l| l.starts_with("p_bucket")) {
                let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
                prop_assert!(n >= last);
                last = n;
            }
            prop_assert_eq!(last, values.len() as u64);
            prop_assert_eq!(h.count(), values.len() as u64);
        }

        #[test]
        fn any_label_value_renders_on_one_line(v in ".{0,30}") {
            let r = Registry::new();
            r.counter_vec("c", "", &["l"]).unwrap().with(&[&v]).unwrap().inc();
            let text = r.render();
            prop_assert_eq!(text.lines().count(), 3);
        }
    }
}
