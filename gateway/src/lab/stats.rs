//! Means with 95 % confidence intervals over independent runs (Student's t).

use serde::Serialize;

/// A sample mean with the half-width of its 95 % confidence interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Estimate {
    /// Sample mean.
    pub mean: f64,
    /// Half-width of the 95 % confidence interval (0 with fewer than two samples).
    pub ci95: f64,
    /// Samples.
    pub n: usize,
}

impl Estimate {
    /// Mean and 95 % CI of `xs` (NaN entries are skipped).
    pub fn of(xs: &[f64]) -> Self {
        let v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
        let n = v.len();
        if n == 0 {
            return Self {
                mean: f64::NAN,
                ci95: f64::NAN,
                n,
            };
        }
        let mean = v.iter().sum::<f64>() / n as f64;
        if n < 2 {
            return Self { mean, ci95: 0.0, n };
        }
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        Self {
            mean,
            ci95: t975(n - 1) * (var / n as f64).sqrt(),
            n,
        }
    }

    /// Whether `x` lies within the interval.
    pub fn contains(&self, x: f64) -> bool {
        (x - self.mean).abs() <= self.ci95
    }

    /// Lower end of the interval.
    pub fn low(&self) -> f64 {
        self.mean - self.ci95
    }

    /// Upper end of the interval.
    pub fn high(&self) -> f64 {
        self.mean + self.ci95
    }
}

/// The 97.5 % quantile of Student's t with `df` degrees of freedom.
pub fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => T[df - 1],
        31..=60 => 2.0,
        61..=120 => 1.98,
        _ => 1.96,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_of_a_small_sample() {
        let e = Estimate::of(&[1.0, 2.0, 3.0]);
        assert_eq!(e.n, 3);
        assert!((e.mean - 2.0).abs() < 1e-12);
        // s = 1, t(2) = 4.303, half-width = 4.303 / sqrt(3).
        assert!((e.ci95 - 4.303 / 3f64.sqrt()).abs() < 1e-9);
        assert!(e.contains(4.0) && !e.contains(4.6));
    }

    #[test]
    fn one_sample_has_no_width_and_nan_is_skipped() {
        let e = Estimate::of(&[f64::NAN, 5.0]);
        assert_eq!((e.mean, e.ci95, e.n), (5.0, 0.0, 1));
        assert!(Estimate::of(&[]).mean.is_nan());
    }
}
