//! Bounded polling: every wait in the harness has a deadline.

use std::time::{Duration, Instant};

/// Calls `f` every `every` until it returns `Some`, for at most `within` (at least once);
/// `None` when the time ran out.
pub fn poll<T>(within: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if t0.elapsed() >= within {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Waits (polling every 25 ms) until `f` holds and returns how long that took; panics
/// naming `what` after `within`.
pub fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    loop {
        if f() {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
}
