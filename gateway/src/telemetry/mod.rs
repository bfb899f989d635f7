//! Telemetry: structured logs ([`logging`]) and Prometheus metrics ([`metrics`],
//! served over HTTP by [`http`]).

pub mod http;
pub mod logging;
pub mod metrics;

pub use http::MetricsServer;
pub use logging::LogFormat;
pub use metrics::{
    Collector, Counter, CounterVec, Gauge, GaugeVec, Histogram, HistogramVec, MetricsError,
    Registry, StatusProvider,
};
