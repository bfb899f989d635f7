//! The cookie-interval rule of thumb: work lost per failure is about half a
//! cookie interval, so for a target goodput G, a PE MTBF (s) and capacity C
//! (calculations/s), the interval is `2 · MTBF · C · (1 − G)`.

use serde::Serialize;

/// What the rule gives for one setting.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CookieAdvice {
    /// Cookie interval, calculations.
    pub interval: f64,
    /// Cookies per average request (request size / interval).
    pub cookies_per_request: f64,
    /// Interval as a share of the average request size.
    pub share_of_request: f64,
    /// MTBF in average request handling times (request size / capacity).
    pub mtbf_in_requests: f64,
}

/// The cookie interval losing at most `1 − goodput` of the work to failures
/// with MTBF `mtbf_s` seconds at `capacity` calculations/s, for requests of
/// `request_size` calculations on average.
pub fn advise(mtbf_s: f64, capacity: f64, goodput: f64, request_size: f64) -> CookieAdvice {
    let interval = 2.0 * mtbf_s * capacity * (1.0 - goodput);
    CookieAdvice {
        interval,
        cookies_per_request: request_size / interval,
        share_of_request: interval / request_size,
        mtbf_in_requests: mtbf_s * capacity / request_size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn papers_example() {
        // MTBF 100 request times of 10 s, 1e6 calc/s, 99 % goodput:
        // 2 · 1000 s · 1e6 · 0.01 = 2e7 calculations, half a cookie per request.
        let a = advise(1000.0, 1e6, 0.99, 1e7);
        assert!((a.interval - 2e7).abs() < 1e-3);
        assert!((a.cookies_per_request - 0.5).abs() < 1e-12);
        assert!((a.mtbf_in_requests - 100.0).abs() < 1e-9);
        // Halving the loss allowed halves the interval.
        assert!((advise(1000.0, 1e6, 0.995, 1e7).interval - 1e7).abs() < 1e-3);
    }
}
