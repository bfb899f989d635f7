//! The CalcApp-style workload, independent of how time passes.
//!
//! [`CalcServer`] is one pool element's processor: requests share its capacity
//! (processor sharing) and each reports a checkpoint (a state cookie: the
//! calculations done so far) every cookie interval. Time is a plain `f64` of
//! seconds handed in by the caller, so the same code serves the discrete-event
//! simulation here and a real-time driver (a PE process on a scaled clock
//! would call [`CalcServer::advance`] with its scaled elapsed time and sleep
//! until [`CalcServer::next_event`]).

/// Identifies one request on one PE: the pool user and its session number.
pub type JobKey = (usize, u64);

/// A negative-exponential sample with mean `mean`.
pub fn exp(rng: &mut impl rand::Rng, mean: f64) -> f64 {
    let u: f64 = rng.random();
    -(1.0 - u).ln() * mean
}

/// One PU's requests: gaps between arrivals and sizes, both negative-exponential.
///
/// The stream depends on the seed and the PU only, and both the simulation and
/// the real-time run draw it in the same order (gap, then per arrival: size,
/// gap), so the two see the same requests at the same scenario times for a
/// seed (common random numbers: their figures can be compared run by run).
pub struct RequestStream {
    rng: rand_chacha::ChaCha8Rng,
    interval: f64,
    size: f64,
}

impl RequestStream {
    /// The stream of PU `pu` in the run with `seed`: mean gap `interval` (s),
    /// mean size `size` (calculations).
    pub fn new(seed: u64, pu: usize, interval: f64, size: f64) -> Self {
        use rand::SeedableRng;
        let s = seed ^ 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(pu as u64 + 1);
        Self {
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(s),
            interval,
            size,
        }
    }

    /// Time until the next arrival (s).
    pub fn gap(&mut self) -> f64 {
        exp(&mut self.rng, self.interval)
    }

    /// Size of the request arriving now (calculations, at least 1).
    pub fn size(&mut self) -> f64 {
        exp(&mut self.rng, self.size).max(1.0)
    }
}

/// One PE slot's failures: lifetimes (negative-exponential with the MTBF) and
/// whether each failure is silent, drawn as life, then per failure: silent, life.
/// Shared by the simulation and the real-time run like [`RequestStream`].
pub struct FailureStream {
    rng: rand_chacha::ChaCha8Rng,
    mtbf: Option<f64>,
    silent: f64,
}

impl FailureStream {
    /// The stream of slot `slot` in the run with `seed`: mean lifetime `mtbf`
    /// (s; `None`: never fails), share `silent` of silent failures.
    pub fn new(seed: u64, slot: usize, mtbf: Option<f64>, silent: f64) -> Self {
        use rand::SeedableRng;
        Self {
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (0x5eed_0000_0000 + slot as u64)),
            mtbf,
            silent,
        }
    }

    /// Lifetime of the PE starting now (s); infinite when PEs do not fail.
    pub fn life(&mut self) -> f64 {
        match self.mtbf {
            Some(m) => exp(&mut self.rng, m),
            None => f64::INFINITY,
        }
    }

    /// Whether the failure happening now is silent.
    pub fn silent(&mut self) -> bool {
        use rand::Rng;
        self.rng.random::<f64>() < self.silent
    }
}

/// Load as Least Used sees it: requests being handled, 1/256 of full scale each.
pub fn least_used_load(jobs: usize) -> pool_core::types::Load {
    let per = u32::MAX / 256;
    u32::try_from(jobs).unwrap_or(u32::MAX).saturating_mul(per)
}

/// One request being handled.
#[derive(Clone, Debug)]
struct Job {
    key: JobKey,
    size: f64,
    /// Calculations done when the job joined (the checkpoint it resumed from).
    base: f64,
    /// Value of the per-job virtual work counter when it joined.
    v0: f64,
    /// Latest checkpoint reported (calculations).
    last_cookie: f64,
    /// Next checkpoint boundary (calculations), or `size` if none is left.
    next_cookie: f64,
}

impl Job {
    fn done(&self, v: f64) -> f64 {
        (self.base + (v - self.v0)).min(self.size)
    }

    /// Virtual-work value at which the next thing (cookie or completion) happens.
    fn next_v(&self) -> f64 {
        self.v0 + (self.next_cookie.min(self.size) - self.base)
    }
}

/// Something a [`CalcServer`] reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CalcEvent {
    /// Checkpoint: `done` calculations of the request are done.
    Cookie {
        /// The request.
        key: JobKey,
        /// Calculations done.
        done: f64,
    },
    /// The request is complete.
    Complete {
        /// The request.
        key: JobKey,
    },
}

/// What a request had when the server stopped: done so far and last checkpoint.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interrupted {
    /// The request.
    pub key: JobKey,
    /// Calculations done at the stop.
    pub done: f64,
    /// Latest checkpoint the server reported (or the resume point).
    pub last_cookie: f64,
}

/// A pool element's processor in processor-sharing mode with periodic checkpoints.
#[derive(Clone, Debug)]
pub struct CalcServer {
    capacity: f64,
    cookie_interval: f64,
    /// Work each job received since the server started (grows at capacity / n).
    v: f64,
    /// Time `v` refers to.
    t: f64,
    jobs: Vec<Job>,
    /// Busy time inside the measurement window.
    busy: f64,
    window: (f64, f64),
}

/// Slack for floating-point rounding when an event falls due (calculations).
const EPS: f64 = 1e-3;

impl CalcServer {
    /// An idle server started at time `now` (s); busy time is counted within `window`.
    pub fn new(capacity: f64, cookie_interval: f64, now: f64, window: (f64, f64)) -> Self {
        Self {
            capacity,
            cookie_interval,
            v: 0.0,
            t: now,
            jobs: Vec::new(),
            busy: 0.0,
            window,
        }
    }

    /// Requests being handled (the load Least Used sees).
    pub fn jobs(&self) -> usize {
        self.jobs.len()
    }

    /// Busy time within the measurement window so far; the server does
    /// `capacity` calculations per second of it.
    pub fn busy_time(&self) -> f64 {
        self.busy
    }

    /// Moves time forward to `now`, sharing the capacity among the jobs.
    pub fn advance(&mut self, now: f64) {
        if now <= self.t {
            return;
        }
        if !self.jobs.is_empty() {
            self.v += (now - self.t) * self.capacity / self.jobs.len() as f64;
            let (a, b) = self.window;
            let overlap = now.min(b) - self.t.max(a);
            if overlap > 0.0 {
                self.busy += overlap;
            }
        }
        self.t = now;
    }

    /// Accepts a request of `size` calculations that resumes at `start`
    /// (0, or a checkpoint); call [`advance`](Self::advance) first.
    pub fn add(&mut self, key: JobKey, size: f64, start: f64) {
        let start = start.clamp(0.0, size);
        self.jobs.push(Job {
            key,
            size,
            base: start,
            v0: self.v,
            last_cookie: start,
            next_cookie: self.boundary_after(start),
        });
    }

    fn boundary_after(&self, done: f64) -> f64 {
        if self.cookie_interval <= 0.0 {
            return f64::INFINITY;
        }
        ((done / self.cookie_interval).floor() + 1.0) * self.cookie_interval
    }

    /// Whether a request is being handled here.
    pub fn has(&self, key: JobKey) -> bool {
        self.jobs.iter().any(|j| j.key == key)
    }

    /// When the next cookie or completion falls due (s), if any job runs.
    pub fn next_event(&self) -> Option<f64> {
        let next_v = self
            .jobs
            .iter()
            .map(Job::next_v)
            .fold(f64::INFINITY, f64::min);
        if !next_v.is_finite() {
            return None;
        }
        let dv = (next_v - self.v).max(0.0);
        Some(self.t + dv * self.jobs.len() as f64 / self.capacity)
    }

    /// Cookies and completions due at the current time (after [`advance`](Self::advance));
    /// completed jobs leave.
    pub fn take_due(&mut self, out: &mut Vec<CalcEvent>) {
        let v = self.v;
        let mut i = 0;
        while i < self.jobs.len() {
            let job = &mut self.jobs[i];
            if job.next_v() - v > EPS {
                i += 1;
                continue;
            }
            if job.next_cookie < job.size - EPS {
                let done = job.next_cookie;
                job.last_cookie = done;
                job.next_cookie += self.cookie_interval;
                out.push(CalcEvent::Cookie { key: job.key, done });
                // The same job may owe nothing more yet: look at it again.
                continue;
            }
            out.push(CalcEvent::Complete { key: job.key });
            self.jobs.swap_remove(i);
        }
    }

    /// Removes one job (its pool user went away) at the current time (after
    /// [`advance`](Self::advance)) and says how far it had got.
    pub fn remove(&mut self, key: JobKey) -> Option<Interrupted> {
        let i = self.jobs.iter().position(|j| j.key == key)?;
        let j = self.jobs.swap_remove(i);
        Some(Interrupted {
            key: j.key,
            done: j.done(self.v),
            last_cookie: j.last_cookie,
        })
    }

    /// Stops every job (a failure or shutdown at the current time) and says
    /// how far each had got.
    pub fn stop_all(&mut self) -> Vec<Interrupted> {
        let v = self.v;
        self.jobs
            .drain(..)
            .map(|j| Interrupted {
                key: j.key,
                done: j.done(v),
                last_cookie: j.last_cookie,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_until_idle(s: &mut CalcServer, log: &mut Vec<(f64, CalcEvent)>) {
        let mut out = Vec::new();
        while let Some(t) = s.next_event() {
            s.advance(t);
            s.take_due(&mut out);
            log.extend(out.drain(..).map(|e| (t, e)));
        }
    }

    #[test]
    fn two_jobs_share_the_capacity() {
        let mut s = CalcServer::new(100.0, 1e9, 0.0, (0.0, 1e9));
        s.add((0, 0), 100.0, 0.0);
        s.add((1, 0), 200.0, 0.0);
        let mut log = Vec::new();
        run_until_idle(&mut s, &mut log);
        // Both at 50/s: the small one after 2 s; the big one has 100 left, alone at 100/s.
        assert_eq!(log.len(), 2);
        assert!((log[0].0 - 2.0).abs() < 1e-9, "{log:?}");
        assert!((log[1].0 - 3.0).abs() < 1e-9, "{log:?}");
        assert!((s.busy_time() - 3.0).abs() < 1e-9);
    }

    #[test]
    fn cookies_every_interval_from_the_resume_point() {
        let mut s = CalcServer::new(10.0, 25.0, 0.0, (0.0, 1e9));
        s.add((0, 0), 100.0, 30.0);
        let mut log = Vec::new();
        run_until_idle(&mut s, &mut log);
        let cookies: Vec<f64> = log
            .iter()
            .filter_map(|(_, e)| match e {
                CalcEvent::Cookie { done, .. } => Some(*done),
                _ => None,
            })
            .collect();
        assert_eq!(cookies, vec![50.0, 75.0]);
        assert!((log.last().unwrap().0 - 7.0).abs() < 1e-9);
    }

    #[test]
    fn stop_reports_work_since_the_last_cookie() {
        let mut s = CalcServer::new(10.0, 25.0, 0.0, (0.0, 1e9));
        s.add((0, 0), 100.0, 0.0);
        let mut out = Vec::new();
        s.advance(3.0);
        s.take_due(&mut out);
        assert_eq!(
            out,
            vec![CalcEvent::Cookie {
                key: (0, 0),
                done: 25.0
            }]
        );
        s.advance(4.0);
        let stopped = s.stop_all();
        assert_eq!(stopped.len(), 1);
        assert!((stopped[0].done - 40.0).abs() < 1e-9);
        assert_eq!(stopped[0].last_cookie, 25.0);
        assert_eq!(s.jobs(), 0);
    }

    #[test]
    fn remove_takes_one_job_and_the_rest_speed_up() {
        let mut s = CalcServer::new(10.0, 25.0, 0.0, (0.0, 1e9));
        s.add((0, 0), 100.0, 0.0);
        s.add((1, 0), 100.0, 0.0);
        s.advance(2.0);
        let r = s.remove((1, 0)).unwrap();
        assert!((r.done - 10.0).abs() < 1e-9);
        assert!(s.remove((1, 0)).is_none());
        assert!(!s.has((1, 0)) && s.has((0, 0)));
        // 90 left at the full 10/s; cookies at 25, 50, 75 come first.
        let mut log = Vec::new();
        run_until_idle(&mut s, &mut log);
        assert!((log.last().unwrap().0 - 11.0).abs() < 1e-9, "{log:?}");
    }

    #[test]
    fn busy_time_counts_only_inside_the_window() {
        let mut s = CalcServer::new(1.0, 1e9, 0.0, (1.0, 2.5));
        s.add((0, 0), 10.0, 0.0);
        s.advance(3.0);
        assert!((s.busy_time() - 1.5).abs() < 1e-9);
    }
}
