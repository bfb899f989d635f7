//! The real-time lab: the workload of [`super::sim`] as real processes on
//! loopback over SCTP (over UDP), on a scaled time base.
//!
//! - a `poolgate registrar` process (configuration overlay: endpoint keep-alive
//!   scaled, MAX-BAD-PE-REPORT, PEs per handle resolution, metrics on a free port);
//! - N `poolgate lab pe` processes ([`pe`]), registered through the production
//!   PE driver, serving CalcApp requests in processor-sharing mode;
//! - the pool users as tasks in this process ([`pu`]);
//! - failures: at exponentially distributed times per the MTBF, a PE is SIGKILLed
//!   (silent) or sent SIGTERM (a clean stop: final cookies, deregistration), and
//!   a fresh PE takes its slot on a new port at once.
//!
//! Every message between two components takes the scenario's network delay,
//! as in the simulation ([`delay`]); how much later than that they were acted
//! on is measured and reported ([`RealRun::message_lateness_ms`]).
//!
//! After the scenario time, arrivals and failures stop and the PUs finish their
//! queues (the drain), so a run also says whether every request completed.
//! The figures are those of [`super::sim::RunResult`], measured the same way.

pub mod delay;
pub mod pe;
pub mod proto;
pub mod pu;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;

use self::delay::{Lateness, NetDelay, Timer};
use self::proto::Clock;
use super::params::Params;
use super::sim::RunResult;
use super::workload::FailureStream;

/// How a real-time run is carried out.
#[derive(Clone, Debug)]
pub struct RealOptions {
    /// Real seconds per scenario second (0.01: 1 s of scenario = 10 ms).
    pub time_scale: f64,
    /// Longest drain after the scenario time, scenario seconds.
    pub drain: f64,
    /// The `poolgate` binary to start the registrar and PEs from.
    pub poolgate: PathBuf,
}

impl RealOptions {
    /// Options with the running executable as `poolgate`.
    pub fn new(time_scale: f64) -> anyhow::Result<Self> {
        Ok(RealOptions {
            time_scale,
            drain: 600.0,
            poolgate: std::env::current_exe().context("locating the poolgate binary")?,
        })
    }
}

/// One real-time run: the simulation's figures plus what only a real run has.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RealRun {
    /// The figures, measured as the simulation measures them.
    #[serde(flatten)]
    pub result: RunResult,
    /// Requests issued.
    pub issued: u64,
    /// Requests completed, drain included.
    pub completed: u64,
    /// Requests not completed when the drain ended.
    pub unfinished: u64,
    /// PE processes started (initial and replacements).
    pub pe_processes: u64,
    /// Wall time of the run, s.
    pub wall_seconds: f64,
    /// Mean lateness of the PEs' processor timers (real ms): how far behind the
    /// scaled clock the cookies and completions went out.
    pub pe_timer_lateness_ms: f64,
    /// The residual real latency: how much later than their modelled arrival
    /// (sent + network delay) messages were acted on, mean over every delayed
    /// message (real ms; loopback beyond the delay, and scheduling).
    pub message_lateness_ms: f64,
    /// The same in scenario ms (what it adds to the simulated network delay).
    pub message_lateness_scenario_ms: f64,
    /// Messages delayed and measured (PUs and PEs).
    pub messages: u64,
    /// Share of them that arrived only after their modelled arrival.
    pub overdue_share: f64,
}

/// What a PE process said when it ended.
#[derive(Clone, Debug, Default)]
struct PeStats {
    busy: f64,
    late_sum: f64,
    late_n: u64,
    msg_late: Lateness,
    /// (done, last cookie) per request it was handling.
    jobs: Vec<(f64, f64)>,
}

fn parse_stats(line: &str) -> Option<PeStats> {
    let rest = line.strip_prefix("stats ")?;
    let mut s = PeStats::default();
    for field in rest.split_whitespace() {
        if let Some(b) = field.strip_prefix("busy=") {
            s.busy = b.parse().ok()?;
        } else if let Some(l) = field.strip_prefix("late=") {
            let (sum, n) = l.split_once(':')?;
            s.late_sum = sum.parse().ok()?;
            s.late_n = n.parse().ok()?;
        } else if let Some(m) = field.strip_prefix("msg=") {
            let mut it = m.split(':');
            s.msg_late.sum = it.next()?.parse().ok()?;
            s.msg_late.n = it.next()?.parse().ok()?;
            s.msg_late.overdue = it.next()?.parse().ok()?;
        } else if let Some(j) = field.strip_prefix("jobs=") {
            for item in j.split(',').filter(|x| !x.is_empty()) {
                let (d, c) = item.split_once(':')?;
                s.jobs.push((d.parse().ok()?, c.parse().ok()?));
            }
        }
    }
    Some(s)
}

/// One running PE process.
struct PeProc {
    child: Child,
    stdin: ChildStdin,
    ready: Option<oneshot::Receiver<()>>,
    stats: oneshot::Receiver<PeStats>,
}

/// What the lab side counts about PEs.
#[derive(Debug, Default)]
struct PeTally {
    busy: f64,
    late_sum: f64,
    late_n: u64,
    msg_late: Lateness,
    lost_silent: Vec<f64>,
    lost_total: f64,
    failures: u64,
    silent_failures: u64,
    processes: u64,
}

impl PeTally {
    fn add(&mut self, s: &PeStats) {
        self.busy += s.busy;
        self.late_sum += s.late_sum;
        self.late_n += s.late_n;
        self.msg_late.merge(&s.msg_late);
    }
}

struct Lab {
    p: Params,
    opts: RealOptions,
    clock: Clock,
    registrar: std::net::SocketAddr,
    key: String,
    next_id: u32,
    tally: Arc<Mutex<PeTally>>,
}

impl Lab {
    fn tally(&self) -> std::sync::MutexGuard<'_, PeTally> {
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn_pe(&mut self) -> anyhow::Result<PeProc> {
        self.next_id += 1;
        let p = &self.p;
        let mut child = Command::new(&self.opts.poolgate)
            .args(["lab", "pe", "--registrar"])
            .arg(self.registrar.to_string())
            .arg("--id")
            .arg(self.next_id.to_string())
            .args(["--policy", p.policy.short()])
            .arg("--capacity")
            .arg(p.capacity.to_string())
            .arg("--cookie-interval")
            .arg(p.cookie_interval.to_string())
            .arg("--max-jobs")
            .arg(p.max_jobs.to_string())
            .arg("--time-scale")
            .arg(self.clock.scale.to_string())
            .arg("--epoch-ns")
            .arg(self.clock.epoch_ns().to_string())
            .arg("--window-start")
            .arg(p.warmup.to_string())
            .arg("--window-end")
            .arg(p.duration.to_string())
            .arg("--network-delay")
            .arg(p.network_delay.to_string())
            .env(proto::KEY_ENV, &self.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting a lab PE")?;
        let stdin = child.stdin.take().context("PE stdin")?;
        let stdout = child.stdout.take().context("PE stdout")?;
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stats_tx, stats_rx) = oneshot::channel();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            let mut ready_tx = Some(ready_tx);
            let mut stats_tx = Some(stats_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("ready ") {
                    if let Some(t) = ready_tx.take() {
                        let _ = t.send(());
                    }
                } else if let Some(s) = parse_stats(&line) {
                    if let Some(t) = stats_tx.take() {
                        let _ = t.send(s);
                    }
                }
            }
        });
        self.tally().processes += 1;
        Ok(PeProc {
            child,
            stdin,
            ready: Some(ready_rx),
            stats: stats_rx,
        })
    }

    /// Fails a PE: SIGKILL after freezing it (silent) or SIGTERM (clean).
    async fn fail(&self, mut pe: PeProc, silent: bool) {
        let counting = {
            let t = self.clock.now();
            t >= self.p.warmup && t <= self.p.duration
        };
        let abort = self.p.abort_restart;
        if counting {
            let mut t = self.tally();
            t.failures += 1;
            if silent {
                t.silent_failures += 1;
            }
        }
        if silent {
            // `freeze` makes it stop answering at once and say how far each request
            // got; the SIGKILL follows.
            let _ = pe.stdin.write_all(b"freeze\n").await;
            let _ = pe.stdin.flush().await;
            let stats = tokio::time::timeout(Duration::from_secs(2), &mut pe.stats).await;
            let _ = pe.child.start_kill();
            let stats = match stats {
                Ok(Ok(s)) => s,
                _ => {
                    tracing::warn!("a frozen PE did not report");
                    PeStats::default()
                }
            };
            let mut t = self.tally();
            t.add(&stats);
            for (done, last) in stats.jobs {
                let lost = if abort { done } else { (done - last).max(0.0) };
                if counting {
                    t.lost_silent.push(lost);
                    t.lost_total += lost;
                }
            }
            drop(t);
            tokio::spawn(async move {
                let _ = pe.child.wait().await;
            });
        } else {
            terminate(&pe.child);
            let tally = self.tally.clone();
            tokio::spawn(async move {
                let stats = tokio::time::timeout(Duration::from_secs(5), &mut pe.stats).await;
                if let Ok(Ok(s)) = stats {
                    let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
                    t.add(&s);
                    if abort && counting {
                        t.lost_total += s.jobs.iter().map(|j| j.0).sum::<f64>();
                    }
                }
                if tokio::time::timeout(Duration::from_secs(5), pe.child.wait())
                    .await
                    .is_err()
                {
                    let _ = pe.child.start_kill();
                }
            });
        }
    }
}

/// SIGTERM to a child process.
fn terminate(child: &Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) with a pid we started and have not reaped; no memory involved.
        let _ = unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}

fn free_udp() -> anyhow::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn free_tcp() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn micros(secs: f64) -> String {
    format!("{}us", (secs * 1e6).round().max(1.0) as u64)
}

/// Reads the registrar's counters from its metrics endpoint.
async fn scrape(port: u16) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let get = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut body = String::new();
        s.read_to_string(&mut body).await?;
        Ok::<_, std::io::Error>(body)
    };
    if let Ok(Ok(body)) = tokio::time::timeout(Duration::from_secs(2), get).await {
        for line in body
            .lines()
            .filter(|l| l.starts_with("poolgate_registrar_"))
        {
            if let Some((k, v)) = line.rsplit_once(' ') {
                if let Ok(v) = v.parse() {
                    out.insert(k.to_string(), v);
                }
            }
        }
    }
    out
}

fn delta(a: &HashMap<String, f64>, b: &HashMap<String, f64>, key: &str) -> u64 {
    let k = format!("poolgate_registrar_{key}_total");
    let d = b.get(&k).copied().unwrap_or(0.0) - a.get(&k).copied().unwrap_or(0.0);
    d.max(0.0).round() as u64
}

/// Runs one scenario in real time with `seed` (its own runtime).
pub fn run(p: &Params, seed: u64, opts: &RealOptions) -> anyhow::Result<RealRun> {
    p.validate()?;
    if !(opts.time_scale > 0.0 && opts.time_scale.is_finite()) {
        anyhow::bail!("--time-scale must be positive");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(run_async(p.clone(), seed, opts.clone()))
}

async fn run_async(p: Params, seed: u64, opts: RealOptions) -> anyhow::Result<RealRun> {
    let wall = std::time::Instant::now();
    let dir = std::env::temp_dir().join(format!(
        "poolgate-lab-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let r = run_in(&p, seed, &opts, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let mut r = r?;
    r.wall_seconds = wall.elapsed().as_secs_f64();
    Ok(r)
}

async fn run_in(
    p: &Params,
    seed: u64,
    opts: &RealOptions,
    dir: &std::path::Path,
) -> anyhow::Result<RealRun> {
    let wall0 = std::time::Instant::now();
    let scale = opts.time_scale;
    let reg_port = free_udp()?;
    let metrics_port = free_tcp()?;
    let registrar: std::net::SocketAddr = ([127, 0, 0, 1], reg_port).into();
    let file = dir.join("registrar.toml");
    // Every simulated PU is its own pool user, as in the simulation, though all
    // share 127.0.0.1: failure reports count per association.
    std::fs::write(
        &file,
        format!(
            "[registrar]\nid = 1\nlisten = [\"{registrar}\"]\nmax_bad_pe_report = {mbpr}\n\
             failure_report_scope = \"association\"\nmax_resolution_items = {items}\n\
             [registrar.keepalive]\ninterval = \"{kai}\"\ntimeout = \"{kat}\"\n\
             [registrar.registration]\nmin_life = \"10ms\"\n\
             [registrar.limits]\nmax_associations_per_peer = 100000\nmax_pes_per_pool = 100000\n\
             failure_reports_per_pu_per_sec = 100000\n\
             [registrar.metrics]\nenabled = true\nlisten = \"127.0.0.1:{metrics_port}\"\n",
            mbpr = p.max_bad_pe_report.unwrap_or(u32::MAX),
            items = p.resolution_items,
            kai = micros(p.endpoint_ka_interval * scale),
            kat = micros(p.endpoint_ka_timeout.min(p.endpoint_ka_interval) * scale),
        ),
    )?;
    let mut reg = Command::new(&opts.poolgate)
        .args(["--log-level", "error", "registrar", "--config"])
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the registrar")?;
    let t0 = tokio::time::Instant::now();
    while scrape(metrics_port).await.is_empty() {
        if t0.elapsed() > Duration::from_secs(10) {
            anyhow::bail!("the registrar did not come up within 10 s");
        }
        if let Ok(Some(st)) = reg.try_wait() {
            anyhow::bail!("the registrar exited: {st}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Scenario time 0 lies a little ahead, so that every PE can register first.
    let allowance = Duration::from_millis(500 + 50 * p.pes as u64);
    let clock = Clock {
        epoch: SystemTime::now() + allowance,
        scale,
    };
    let net = NetDelay::new(
        clock,
        p.network_delay,
        Timer::start().context("starting the timer thread")?,
    );
    let mut lab = Lab {
        p: p.clone(),
        opts: opts.clone(),
        clock,
        registrar,
        key: proto::new_key(),
        next_id: 0,
        tally: Arc::new(Mutex::new(PeTally::default())),
    };
    let mut slots: Vec<PeProc> = Vec::new();
    for _ in 0..p.pes {
        slots.push(lab.spawn_pe()?);
    }
    for pe in &mut slots {
        if let Some(r) = pe.ready.take() {
            tokio::time::timeout(Duration::from_secs(15), r)
                .await
                .context("a PE did not register within 15 s")?
                .context("a PE exited before registering")?;
        }
    }
    tracing::info!(elapsed = ?wall0.elapsed(), "PEs registered");
    let late = clock.now();
    if late > 0.0 {
        tracing::warn!(
            late_s = late,
            "PEs registered after scenario start; the warm-up absorbs it"
        );
    }
    let (transport, _incoming) = crate::transport::sctp_udp::SctpUdp::bind(
        crate::session::transport_config(([127, 0, 0, 1], 0).into(), vec![], &Default::default()),
    )
    .context("binding the PUs' SCTP over UDP")?;
    let ctx = Arc::new(pu::PuContext {
        p: p.clone(),
        clock,
        net: net.clone(),
        registrar,
        transport,
        tally: Mutex::new(pu::PuTally::default()),
    });
    let mut pus = tokio::task::JoinSet::new();
    for u in 0..p.pus() {
        pus.spawn(pu::run(ctx.clone(), u, seed));
    }
    let mut at_warmup = HashMap::new();
    let mut warm = p.warmup <= 0.0;
    if warm {
        at_warmup = scrape(metrics_port).await;
    }
    // Failures: per slot the simulation's stream of lifetimes and kinds.
    let mut streams: Vec<FailureStream> = (0..p.pes)
        .map(|i| FailureStream::new(seed, i, p.mtbf_secs(), p.silent))
        .collect();
    let mut fail_at: Vec<f64> = streams.iter_mut().map(FailureStream::life).collect();
    loop {
        let (slot, t) = fail_at
            .iter()
            .copied()
            .enumerate()
            .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
        let next = if warm { t } else { t.min(p.warmup) };
        if next > p.duration {
            break;
        }
        net.until(next).await;
        if !warm && next >= p.warmup {
            at_warmup = scrape(metrics_port).await;
            warm = true;
            if t > p.warmup {
                continue;
            }
        }
        let silent = streams[slot].silent();
        let fresh = lab.spawn_pe()?;
        let old = std::mem::replace(&mut slots[slot], fresh);
        lab.fail(old, silent).await;
        fail_at[slot] = clock.now().max(t) + streams[slot].life();
    }
    tokio::time::sleep_until(clock.instant_at(p.duration)).await;
    tracing::info!(elapsed = ?wall0.elapsed(), "scenario time over; draining");
    let at_end = scrape(metrics_port).await;
    // Drain: arrivals have stopped; every PU finishes its queue (or the drain ends).
    let drain_end = clock.instant_at(p.duration + opts.drain);
    while let Ok(Some(_)) = tokio::time::timeout_at(drain_end, pus.join_next()).await {}
    pus.abort_all();
    tracing::info!(elapsed = ?wall0.elapsed(), "drained; stopping the PEs");
    // The PEs still running stop cleanly and report their busy time.
    for pe in &slots {
        terminate(&pe.child);
    }
    for mut pe in slots {
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(5), &mut pe.stats).await {
            lab.tally().add(&s);
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), pe.child.wait()).await;
    }
    tracing::info!(elapsed = ?wall0.elapsed(), "PEs stopped");
    // Let replaced PEs' stop reports arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = reg.start_kill();
    let _ = reg.wait().await;

    let t = lab.tally();
    let u = ctx.tally.lock().unwrap_or_else(|e| e.into_inner());
    let window = (p.duration - p.warmup).max(f64::MIN_POSITIVE);
    let n = u.speeds.len();
    let per = |x: f64| if n == 0 { f64::NAN } else { x / n as f64 };
    let work = t.busy * p.capacity;
    let result = RunResult {
        utilisation: t.busy / (p.pes as f64 * window),
        handling_speed: per(u.speeds.iter().sum()),
        handling_delay: per(u.delays),
        queuing_delay: per(u.queuing),
        startup_delay: per(u.startup),
        processing_time: per(u.processing),
        requests: n as u64,
        failures: t.failures,
        silent_failures: t.silent_failures,
        interrupted: t.lost_silent.len() as u64,
        lost_per_interrupted: if t.lost_silent.is_empty() {
            f64::NAN
        } else {
            t.lost_silent.iter().sum::<f64>() / t.lost_silent.len() as f64
        },
        lost_share: if work > 0.0 { t.lost_total / work } else { 0.0 },
        failovers: u.failovers,
        failure_reports: u.failure_reports,
        keep_alive_removals: delta(&at_warmup, &at_end, "keepalive_failures"),
        report_removals: delta(&at_warmup, &at_end, "removed_by_reports"),
        rejects: u.rejects,
        resolutions: delta(&at_warmup, &at_end, "resolutions"),
        events: 0,
    };
    let lateness_ms = if t.late_n == 0 {
        0.0
    } else {
        1e3 * t.late_sum / t.late_n as f64
    };
    let mut msg = t.msg_late;
    msg.merge(&u.msg_late);
    let message_lateness_ms = msg.mean_ms();
    let delay_ms = 1e3 * scale * p.network_delay;
    let overdue_share = if msg.n == 0 {
        0.0
    } else {
        msg.overdue as f64 / msg.n as f64
    };
    if message_lateness_ms > 0.2 * delay_ms.max(0.05) {
        eprintln!(
            "warning: messages were acted on {message_lateness_ms:.3} ms after their modelled \
             arrival on average ({:.0} % overdue), against a network delay of {delay_ms:.2} ms: \
             real time is slower than the model here; use a coarser --time-scale",
            100.0 * overdue_share
        );
    }
    let ka_ms = 1e3 * scale * p.session_ka_timeout.min(p.endpoint_ka_timeout);
    if lateness_ms > 0.1 * ka_ms {
        eprintln!(
            "warning: the PEs' timers ran {lateness_ms:.1} ms late on average, {:.0} % of the \
             scaled keep-alive timeout ({ka_ms:.0} ms): the machine is too busy for this time \
             scale and keep-alives fail falsely; use a coarser --time-scale",
            100.0 * lateness_ms / ka_ms
        );
    }
    Ok(RealRun {
        result,
        issued: u.issued,
        completed: u.completed,
        unfinished: u.issued.saturating_sub(u.completed),
        pe_processes: t.processes,
        wall_seconds: 0.0,
        pe_timer_lateness_ms: lateness_ms,
        message_lateness_ms,
        message_lateness_scenario_ms: message_lateness_ms / scale,
        messages: msg.n,
        overdue_share,
    })
}
