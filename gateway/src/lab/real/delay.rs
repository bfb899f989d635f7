//! The simulation's network delay in real time.
//!
//! The simulation delivers every message between two components (PU↔PE,
//! PU↔registrar, PE↔registrar) `network_delay` scenario seconds after it was
//! sent. Loopback takes far less, so a real-time run adds the delay itself:
//! a message carries the scenario time it was sent (its *stamp*; see
//! [`super::proto`]) and the receiver acts on it at stamp + delay — not at
//! arrival + delay, so loopback latency and a sender that woke late (within
//! the delay) cost nothing extra. Messages without a stamp (keep-alives, an
//! association going down) are due at arrival + delay.
//!
//! tokio's timers tick every millisecond, which at 1 s = 100 ms is 10 ms of
//! scenario time — as much as the delay itself. The deadlines here are kept by
//! a [`Timer`] thread with 1 ns timer slack instead (tens of microseconds
//! late); what remains, how late messages were acted on after their modelled
//! arrival, is measured ([`Lateness`]) and reported with every run.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::proto::Clock;

/// One sleeper: its deadline and how to wake it.
struct Sleeper {
    at: Instant,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Sleeper {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Sleeper {}
impl PartialOrd for Sleeper {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Sleeper {
    // Reversed: BinaryHeap is a max-heap, the timer wants the earliest first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Default)]
struct Sleepers {
    heap: BinaryHeap<Sleeper>,
    seq: u64,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    sleepers: Mutex<Sleepers>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Sleepers> {
        self.sleepers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Stops the timer thread when the last [`Timer`] goes.
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.lock().stop = true;
        self.0.changed.notify_all();
    }
}

/// Sub-millisecond sleeps for async tasks: a thread that waits on a condition
/// variable with 1 ns timer slack and wakes each sleeper at its deadline.
#[derive(Clone)]
pub struct Timer(Arc<Owner>);

impl Timer {
    /// Starts the timer thread.
    pub fn start() -> std::io::Result<Timer> {
        let shared = Arc::new(Shared::default());
        let worker = shared.clone();
        std::thread::Builder::new()
            .name("lab-timer".into())
            .spawn(move || run_timer(&worker))?;
        Ok(Timer(Arc::new(Owner(shared))))
    }

    /// Sleeps until `at` (returns at once if it has passed).
    pub async fn sleep_until(&self, at: Instant) {
        if at <= Instant::now() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        {
            let shared = &self.0 .0;
            let mut s = shared.lock();
            s.seq += 1;
            let earliest = s.heap.peek().is_none_or(|top| at < top.at);
            let seq = s.seq;
            s.heap.push(Sleeper { at, seq, wake: tx });
            if earliest {
                shared.changed.notify_one();
            }
        }
        // An error means the timer thread is gone: nothing to wait for.
        let _ = rx.await;
    }
}

fn run_timer(shared: &Shared) {
    // 1 ns of timer slack (the default is 50 µs) for this thread's waits.
    // SAFETY: prctl(PR_SET_TIMERSLACK) with an integer argument changes only
    // this thread's timer slack; no memory is passed.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
    let mut s = shared.lock();
    loop {
        if s.stop {
            return;
        }
        let now = Instant::now();
        while s.heap.peek().is_some_and(|top| top.at <= now) {
            if let Some(top) = s.heap.pop() {
                let _ = top.wake.send(());
            }
        }
        s = match s.heap.peek().map(|top| top.at - now) {
            Some(wait) => {
                shared
                    .changed
                    .wait_timeout(s, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => shared.changed.wait(s).unwrap_or_else(|e| e.into_inner()),
        };
    }
}

/// How late messages were acted on after their modelled arrival.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Lateness {
    /// Sum of the lateness, real seconds.
    pub sum: f64,
    /// Messages counted.
    pub n: u64,
    /// Messages that arrived only after their modelled arrival (loopback and
    /// the sender's lateness took longer than the delay).
    pub overdue: u64,
}

impl Lateness {
    /// Counts one message `late` real seconds after it was due; `overdue` if it
    /// was not there in time.
    pub fn add(&mut self, late: f64, overdue: bool) {
        self.sum += late.max(0.0);
        self.n += 1;
        self.overdue += u64::from(overdue);
    }

    /// Adds another tally.
    pub fn merge(&mut self, o: &Lateness) {
        self.sum += o.sum;
        self.n += o.n;
        self.overdue += o.overdue;
    }

    /// Mean lateness, real ms (0 when nothing was counted).
    pub fn mean_ms(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            1e3 * self.sum / self.n as f64
        }
    }
}

/// The network delay of a scenario on its scaled clock.
#[derive(Clone)]
pub struct NetDelay {
    /// The scaled clock.
    pub clock: Clock,
    /// One-way delay between two components, scenario seconds.
    pub delay: f64,
    timer: Timer,
}

impl NetDelay {
    /// The delay model of `clock` with `delay` scenario seconds per message.
    pub fn new(clock: Clock, delay: f64, timer: Timer) -> NetDelay {
        NetDelay {
            clock,
            delay: delay.max(0.0),
            timer,
        }
    }

    /// Sleeps until scenario time `t` (precisely; see [`Timer`]).
    pub async fn until(&self, t: f64) {
        let ahead = (t - self.clock.now()) * self.clock.scale;
        if ahead > 0.0 {
            let at = Instant::now() + Duration::from_secs_f64(ahead);
            self.timer.sleep_until(at).await;
        }
    }

    /// Waits until a message sent at scenario time `sent` arrives and returns
    /// how late (real seconds) this is after its modelled arrival.
    pub async fn arrive(&self, sent: f64) -> f64 {
        let due = sent + self.delay;
        self.until(due).await;
        ((self.clock.now() - due) * self.clock.scale).max(0.0)
    }
}

/// Messages of one association in flight: each is handed on at its due time
/// (scenario seconds), in the order they came (SCTP stream 0 is ordered).
pub struct Inbox<T> {
    queue: VecDeque<(f64, bool, T)>,
    last_due: f64,
}

impl<T> Default for Inbox<T> {
    fn default() -> Self {
        Inbox {
            queue: VecDeque::new(),
            last_due: f64::NEG_INFINITY,
        }
    }
}

impl<T> Inbox<T> {
    /// Queues `item`, which arrived at scenario time `now` and is due at `due`
    /// (never before a message that came earlier).
    pub fn push(&mut self, now: f64, due: f64, item: T) {
        let due = due.max(self.last_due);
        self.last_due = due;
        self.queue.push_back((due, now > due, item));
    }

    /// The due time of the next message.
    pub fn next_due(&self) -> Option<f64> {
        self.queue.front().map(|x| x.0)
    }

    /// The next message if it is due at scenario time `now`, with how late
    /// (scenario seconds) and whether it arrived after its due time.
    pub fn pop_due(&mut self, now: f64) -> Option<(T, f64, bool)> {
        if self.queue.front().is_some_and(|x| x.0 <= now) {
            self.queue
                .pop_front()
                .map(|(due, overdue, item)| (item, now - due, overdue))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inbox_keeps_order_and_due_times() {
        let mut q = Inbox::default();
        q.push(0.0, 1.0, 'a');
        // Due earlier than the message before it: waits for it.
        q.push(0.1, 0.5, 'b');
        q.push(2.5, 2.0, 'c');
        assert_eq!(q.next_due(), Some(1.0));
        assert!(q.pop_due(0.9).is_none());
        assert_eq!(q.pop_due(1.0), Some(('a', 0.0, false)));
        assert_eq!(q.pop_due(1.25), Some(('b', 0.25, false)));
        // 'c' came after its due time.
        assert_eq!(q.pop_due(2.5), Some(('c', 0.5, true)));
        assert!(q.pop_due(9.0).is_none());
    }

    #[test]
    fn the_timer_wakes_sleepers_in_time_and_in_order() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let timer = Timer::start().unwrap();
        rt.block_on(async {
            let t0 = Instant::now();
            let order = Arc::new(Mutex::new(Vec::new()));
            let mut tasks = Vec::new();
            for (i, us) in [(0, 3000u64), (1, 1000), (2, 2000)] {
                let (timer, order) = (timer.clone(), order.clone());
                tasks.push(tokio::spawn(async move {
                    timer.sleep_until(t0 + Duration::from_micros(us)).await;
                    order.lock().unwrap().push(i);
                    (t0.elapsed(), Duration::from_micros(us))
                }));
            }
            for t in tasks {
                // Never early; "in time" only loosely (the host may be busy).
                let (woke, due) = t.await.unwrap();
                assert!(woke >= due, "woke at {woke:?}, due {due:?}");
                assert!(woke - due < Duration::from_millis(500), "{woke:?}");
            }
            assert_eq!(*order.lock().unwrap(), vec![1, 2, 0]);
        });
    }
}
