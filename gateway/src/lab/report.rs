//! Sweep output: CSV, JSON, a terminal table, a Markdown table and the SVG.

use std::fmt::Write;

use serde::Serialize;

use super::params::{Params, PolicyChoice};
use super::runner::PointResult;
use super::stats::Estimate;
use super::svg;

/// A finished sweep: what was swept and every point.
#[derive(Clone, Debug, Serialize)]
pub struct Sweep {
    /// Title (plots, tables).
    pub title: String,
    /// Swept parameter (empty for a single run).
    pub param: String,
    /// Its values, in order.
    pub values: Vec<String>,
    /// Series parameter, if any.
    pub by: Option<String>,
    /// Its values.
    pub by_values: Vec<String>,
    /// Policies.
    pub policies: Vec<PolicyChoice>,
    /// Seeds per point.
    pub seeds: u64,
    /// The base parameters before the sweep's values were applied.
    pub base: Params,
    /// Results.
    pub points: Vec<PointResult>,
}

fn pm(e: &Estimate, scale: f64, digits: usize) -> String {
    if e.mean.is_nan() {
        return "-".into();
    }
    format!(
        "{:.d$} ± {:.d$}",
        e.mean * scale,
        e.ci95 * scale,
        d = digits
    )
}

impl Sweep {
    fn series_label(&self, p: &PointResult) -> String {
        match (&self.by, &p.spec.by_value) {
            (Some(b), Some(v)) => format!("{} {b}={v}", p.spec.policy),
            _ => p.spec.policy.to_string(),
        }
    }

    /// CSV, one row per point.
    pub fn csv(&self) -> String {
        let mut s = String::from(
            "param,value,by,by_value,policy,runs,utilisation,utilisation_ci,handling_speed,handling_speed_ci,\
             handling_delay,handling_delay_ci,queuing_delay,startup_delay,processing_time,lost_per_interrupted,lost_per_interrupted_ci,lost_share,lost_share_ci,\
             failures,failovers,keep_alive_removals,report_removals,rejects,requests\n",
        );
        for p in &self.points {
            let m = &p.summary;
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{:.6},{:.6},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.1},{:.1},{:.6},{:.6},{:.2},{:.2},{:.2},{:.2},{:.2},{:.1}",
                self.param,
                p.spec.value,
                self.by.clone().unwrap_or_default(),
                p.spec.by_value.clone().unwrap_or_default(),
                p.spec.policy,
                p.runs.len(),
                m.utilisation.mean,
                m.utilisation.ci95,
                m.handling_speed.mean,
                m.handling_speed.ci95,
                m.handling_delay.mean,
                m.handling_delay.ci95,
                m.queuing_delay.mean,
                m.startup_delay.mean,
                m.processing_time.mean,
                m.lost_per_interrupted.mean,
                m.lost_per_interrupted.ci95,
                m.lost_share.mean,
                m.lost_share.ci95,
                m.failures.mean,
                m.failovers.mean,
                m.keep_alive_removals.mean,
                m.report_removals.mean,
                m.rejects.mean,
                m.requests.mean,
            );
        }
        s
    }

    /// Pretty JSON of the whole sweep (parameters, summaries and every run).
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    fn rows(&self) -> Vec<[String; 7]> {
        self.points
            .iter()
            .map(|p| {
                let m = &p.summary;
                [
                    p.spec.value.clone(),
                    self.series_label(p),
                    pm(&m.utilisation, 100.0, 1),
                    pm(&m.handling_speed, 1.0, 1),
                    pm(&m.lost_share, 100.0, 2),
                    if m.lost_per_interrupted.mean.is_nan() {
                        "-".into()
                    } else {
                        format!("{:.0}", m.lost_per_interrupted.mean)
                    },
                    format!("{:.1}", m.failures.mean),
                ]
            })
            .collect()
    }

    fn header(&self) -> [String; 7] {
        [
            if self.param.is_empty() {
                "point".into()
            } else {
                self.param.clone()
            },
            "series".into(),
            "utilisation %".into(),
            "handling speed %".into(),
            "work lost %".into(),
            "lost/interrupted".into(),
            "failures/run".into(),
        ]
    }

    /// A fixed-width table for the terminal.
    pub fn table(&self) -> String {
        let header = self.header();
        let rows = self.rows();
        let mut w = header.clone().map(|h| h.chars().count());
        for r in &rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |r: &[String; 7]| {
            r.iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<width$}", width = w[i]))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        let mut s = format!("{}\n", self.title);
        let _ = writeln!(s, "{}", line(&header));
        let _ = writeln!(
            s,
            "{}",
            w.iter()
                .map(|n| "-".repeat(*n))
                .collect::<Vec<_>>()
                .join("  ")
        );
        for r in &rows {
            let _ = writeln!(s, "{}", line(r));
        }
        s
    }

    /// The same table in Markdown.
    pub fn markdown(&self) -> String {
        let mut s = format!("| {} |\n", self.header().join(" | "));
        let _ = writeln!(s, "|{}", "---|".repeat(7));
        for r in self.rows() {
            let _ = writeln!(s, "| {} |", r.join(" | "));
        }
        s
    }

    /// The plot: utilisation and handling speed against the swept values.
    pub fn svg(&self) -> String {
        let mut labels: Vec<String> = Vec::new();
        for p in &self.points {
            let l = self.series_label(p);
            if !labels.contains(&l) {
                labels.push(l);
            }
        }
        let series = labels
            .into_iter()
            .map(|label| {
                let at = |v: &String, f: &dyn Fn(&PointResult) -> (f64, f64)| {
                    self.points
                        .iter()
                        .find(|p| &p.spec.value == v && self.series_label(p) == label)
                        .map(f)
                };
                svg::Series {
                    left: self
                        .values
                        .iter()
                        .map(|v| {
                            at(v, &|p| {
                                let e = p.summary.utilisation;
                                (100.0 * e.mean, 100.0 * e.ci95)
                            })
                        })
                        .collect(),
                    right: self
                        .values
                        .iter()
                        .map(|v| {
                            at(v, &|p| {
                                let e = p.summary.handling_speed;
                                (e.mean, e.ci95)
                            })
                        })
                        .collect(),
                    label,
                }
            })
            .collect::<Vec<_>>();
        svg::render(&self.title, &self.param, &self.values, &series)
    }
}
