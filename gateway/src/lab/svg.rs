//! One SVG per sweep: utilisation and handling speed side by side, a line per
//! series with its 95 % confidence intervals as error bars.

use std::fmt::Write;

/// One plotted line: a label and, per x position, (mean, ci) or nothing.
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Utilisation per x position, % (mean, 95 % half-width).
    pub left: Vec<Option<(f64, f64)>>,
    /// Handling speed per x position, % (mean, 95 % half-width).
    pub right: Vec<Option<(f64, f64)>>,
}

const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
];
const DASHES: [&str; 4] = ["", "6,3", "2,3", "8,3,2,3"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" axis range covering `[lo, hi]` with about five ticks.
fn axis(lo: f64, hi: f64) -> (f64, f64, f64) {
    let (lo, hi) = if (hi - lo).abs() < 1e-9 {
        (lo - 1.0, hi + 1.0)
    } else {
        (lo, hi)
    };
    let raw = (hi - lo) / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((lo / step).floor() * step, (hi / step).ceil() * step, step)
}

/// Renders the two panels; `x_labels` are the swept values in order.
pub fn render(title: &str, x_name: &str, x_labels: &[String], series: &[Series]) -> String {
    let (pw, ph) = (440.0, 300.0);
    let (ml, mt, mb) = (60.0, 50.0, 50.0);
    let legend_h = 18.0 * series.len() as f64 + 10.0;
    let width = 2.0 * (pw + ml) + 40.0;
    let height = mt + ph + mb + legend_h;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="15">{}</text>"#,
        width / 2.0,
        esc(title)
    );
    let n = x_labels.len().max(1);
    for (panel, name) in [
        (0usize, "Utilisation [%]"),
        (1, "Handling speed [% of capacity]"),
    ] {
        let x0 = ml + panel as f64 * (pw + ml + 20.0);
        let pick = |se: &Series| -> Vec<Option<(f64, f64)>> {
            if panel == 0 {
                se.left.clone()
            } else {
                se.right.clone()
            }
        };
        let vals: Vec<f64> = series
            .iter()
            .flat_map(|se| pick(se).into_iter().flatten())
            .flat_map(|(m, c)| [m - c, m + c])
            .filter(|v| v.is_finite())
            .collect();
        let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi, step) = if lo.is_finite() {
            axis(lo.min(0.0f64.max(lo - 0.1 * (hi - lo))), hi)
        } else {
            (0.0, 100.0, 20.0)
        };
        let y = |v: f64| mt + ph - (v - lo) / (hi - lo) * ph;
        let x = |i: usize| x0 + (i as f64 + 0.5) * pw / n as f64;
        let _ = writeln!(
            s,
            r##"<rect x="{x0}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##
        );
        let mut t = lo;
        while t <= hi + step * 1e-6 {
            let yy = y(t);
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" y1="{yy}" x2="{}" y2="{yy}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
                x0 + pw,
                x0 - 5.0,
                yy + 4.0,
                fmt_tick(t)
            );
            t += step;
        }
        for (i, l) in x_labels.iter().enumerate() {
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
                x(i),
                mt + ph + 16.0,
                esc(l)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            x0 + pw / 2.0,
            mt + ph + 34.0,
            esc(x_name)
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">{}</text>"#,
            x0 - 42.0,
            mt + ph / 2.0,
            x0 - 42.0,
            mt + ph / 2.0,
            name
        );
        for (k, se) in series.iter().enumerate() {
            let colour = COLOURS[k % COLOURS.len()];
            let dash = DASHES[(k / COLOURS.len()) % DASHES.len()];
            let pts: Vec<(f64, f64, f64)> = pick(se)
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.filter(|(m, _)| m.is_finite()).map(|(m, c)| (x(i), m, c)))
                .collect();
            let path: Vec<String> = pts
                .iter()
                .map(|(xx, m, _)| format!("{xx:.1},{:.1}", y(*m)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="1.8" stroke-dasharray="{dash}"/>"#,
                path.join(" ")
            );
            for (xx, m, c) in pts {
                let c = if c.is_finite() { c } else { 0.0 };
                let _ = writeln!(
                    s,
                    r#"<line x1="{xx:.1}" y1="{:.1}" x2="{xx:.1}" y2="{:.1}" stroke="{colour}"/><circle cx="{xx:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                    y(m - c),
                    y(m + c),
                    y(m)
                );
            }
        }
    }
    for (k, se) in series.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let dash = DASHES[(k / COLOURS.len()) % DASHES.len()];
        let yy = mt + ph + mb + 10.0 + 18.0 * k as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{ml}" y1="{yy}" x2="{}" y2="{yy}" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{}" y="{}">{}</text>"#,
            ml + 30.0,
            ml + 36.0,
            yy + 4.0,
            esc(&se.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn fmt_tick(t: f64) -> String {
    if (t - t.round()).abs() < 1e-9 {
        format!("{}", t.round())
    } else {
        format!("{t:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_line_per_series_with_error_bars() {
        let series = vec![
            Series {
                label: "lu".into(),
                left: vec![Some((60.0, 1.0)), Some((61.0, 1.0))],
                right: vec![Some((40.0, 2.0)), None],
            },
            Series {
                label: "rr <x>".into(),
                left: vec![Some((59.0, 1.0)), Some((62.0, 0.5))],
                right: vec![Some((30.0, 2.0)), Some((20.0, 1.0))],
            },
        ];
        let svg = render("t", "mtbf", &["1".into(), "10".into()], &series);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 4);
        // One circle per present point: 2 + 1 + 2 + 2.
        assert_eq!(svg.matches("<circle").count(), 7);
        assert!(svg.contains("rr &lt;x&gt;"));
    }

    #[test]
    fn axis_is_nice() {
        assert_eq!(axis(0.0, 97.0), (0.0, 100.0, 20.0));
        let (lo, hi, _) = axis(3.0, 3.0);
        assert!(lo < 3.0 && hi > 3.0);
    }
}
