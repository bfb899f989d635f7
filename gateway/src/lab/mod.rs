//! `poolgate lab`: the failure-handling lab.
//!
//! A CalcApp-style workload (the reference workload of the RSerPool
//! literature) run against poolgate's own registrar, PE and PU state machines
//! in simulated time, swept over any parameter and policy, with means and
//! 95 % confidence intervals, CSV/JSON output and SVG plots.
//!
//! - [`params`]: the scenario parameters, defaults and by-name setters.
//! - [`workload`]: processor-sharing PEs with periodic cookies (time-agnostic,
//!   reusable by a real-time driver).
//! - [`sim`]: the discrete-event scenario around pool-core's state machines.
//! - [`stats`]: means and confidence intervals.
//! - [`runner`]: points over seeds on worker threads.
//! - [`report`], [`svg`]: CSV, JSON, tables and plots.
//! - [`cookie`]: the cookie-interval rule of thumb.
//! - [`real`]: the same workload as real processes over SCTP on a scaled clock.
//! - [`agree`]: simulated against real-time figures at a few points.
//! - [`cli`]: `poolgate lab run|sweep|cookie-interval|agree`.

pub mod agree;
pub mod cli;
pub mod cookie;
pub mod params;
pub mod real;
pub mod report;
pub mod runner;
pub mod sim;
pub mod stats;
pub mod svg;
pub mod workload;
