//! Handlespace throughput and memory.
//!
//! Two shapes: 10,000 pools x 10 PEs (many small pools: cost must not depend
//! on the pool count) and 1 pool x 100,000 PEs (cost at most logarithmic in
//! the pool size). Measured: registrations/s, re-registrations/s, handle
//! resolutions/s for every policy (n = 1 and n = 3), and bytes per PE via a
//! counting global allocator (printed before the timings).
//!
//! Times are the benchmark thread's CPU time (CLOCK_THREAD_CPUTIME_ID), not
//! wall-clock time: the machine is shared, and "single core" throughput is
//! what we want to know. On an idle core the two agree.
//!
//! Run: `cargo bench -p pool-core --bench handlespace`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pool_core::handlespace::{Handlespace, HandlespaceConfig, Registration};
use pool_core::types::{Policy, PoolHandle, Transport, TransportProtocol, TransportUse};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Net bytes allocated by the process.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Criterion measurement: CPU time of the calling thread, in nanoseconds.
struct ThreadCpu;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "thread CPU clock unavailable");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Formats CPU nanoseconds as time and as elements per CPU-second.
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (div, unit) = match typical {
            t if t < 1e3 => (1.0, "ns"),
            t if t < 1e6 => (1e3, "us"),
            t if t < 1e9 => (1e6, "ms"),
            _ => (1e9, "s"),
        };
        values.iter_mut().for_each(|v| *v /= div);
        unit
    }

    fn scale_throughputs(&self, typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let per = match *t {
            Throughput::Elements(n) | Throughput::Bytes(n) | Throughput::BytesDecimal(n) => n,
        } as f64;
        let rate = per * 1e9 / typical;
        let (div, unit) = if rate >= 1e6 {
            (1e6, "Melem/s")
        } else if rate >= 1e3 {
            (1e3, "Kelem/s")
        } else {
            (1.0, "elem/s")
        };
        values.iter_mut().for_each(|v| *v = per * 1e9 / *v / div);
        unit
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// One handlespace shape.
#[derive(Clone, Copy)]
struct Shape {
    name: &'static str,
    pools: usize,
    per_pool: u32,
}

const SMALL_POOLS: Shape = Shape {
    name: "10000x10",
    pools: 10_000,
    per_pool: 10,
};
const HUGE_POOL: Shape = Shape {
    name: "1x100000",
    pools: 1,
    per_pool: 100_000,
};

/// Every RFC 5356 policy, with per-PE data derived from the PE id and a
/// "report" counter so that loads spread out and change on re-registration.
const POLICIES: [&str; 9] = [
    "rr", "wrr", "rand", "wrand", "prio", "lu", "lud", "plu", "rlu",
];

fn policy(name: &str, id: u32, report: u32) -> Policy {
    let load = (id.wrapping_mul(2_654_435_761) ^ report.wrapping_mul(40_503)) % 1000 * 4_000_000;
    match name {
        "rr" => Policy::RoundRobin,
        "wrr" => Policy::WeightedRoundRobin { weight: 1 + id % 4 },
        "rand" => Policy::Random,
        "wrand" => Policy::WeightedRandom { weight: 1 + id % 4 },
        "prio" => Policy::Priority { priority: id % 3 },
        "lu" => Policy::LeastUsed { load },
        "lud" => Policy::LeastUsedDegradation {
            load,
            degradation: 1_000_000,
        },
        "plu" => Policy::PriorityLeastUsed {
            load,
            increment: 2_000_000,
        },
        _ => Policy::RandomizedLeastUsed { load },
    }
}

fn registration(id: u32, policy: Policy) -> Registration {
    Registration {
        id,
        home: id % 4,
        user_transports: vec![Transport {
            protocol: TransportProtocol::Sctp,
            port: 8000,
            transport_use: TransportUse::DataOnly,
            addresses: vec![IpAddr::V4(Ipv4Addr::from(0x0A00_0000 | id))],
        }],
        asap_transport: None,
        policy,
        registration_life: Duration::from_secs(3600),
    }
}

fn handles(shape: Shape) -> Vec<PoolHandle> {
    (0..shape.pools)
        .map(|i| PoolHandle::new(format!("pool-{i:05}")).unwrap())
        .collect()
}

fn config() -> HandlespaceConfig {
    HandlespaceConfig {
        max_pools: 20_000,
        max_elements_per_pool: 200_000,
        max_elements: 500_000,
        max_increment: 1,
    }
}

/// All registrations of a shape, pool by pool.
fn registrations(shape: Shape, policy_name: &str) -> Vec<(usize, Registration)> {
    (0..shape.pools)
        .flat_map(|p| (0..shape.per_pool).map(move |id| (p, id)))
        .map(|(p, id)| (p, registration(id, policy(policy_name, id, 0))))
        .collect()
}

fn fill(shape: Shape, policy_name: &str, now: Instant) -> (Handlespace, Vec<PoolHandle>) {
    let hs_handles = handles(shape);
    let mut hs = Handlespace::new(config());
    for (p, r) in registrations(shape, policy_name) {
        hs.register(&hs_handles[p], r, now).unwrap();
    }
    (hs, hs_handles)
}

fn memory_report() {
    let now = Instant::now();
    for shape in [SMALL_POOLS, HUGE_POOL] {
        for name in ["rr", "lu", "wrand"] {
            let hs_handles = handles(shape);
            let before = LIVE.load(Ordering::Relaxed);
            let mut hs = Handlespace::new(config());
            // Registrations are built inside the window, as a decoder would:
            // their transports become the PE's, and nothing else lingers.
            for (p, handle) in hs_handles.iter().enumerate() {
                for id in 0..shape.per_pool {
                    let r = registration(id, policy(name, id, p as u32));
                    hs.register(handle, r, now).unwrap();
                }
            }
            let used = LIVE.load(Ordering::Relaxed) - before;
            let pes = hs.element_count();
            println!(
                "memory {}/{name}: {:.0} bytes per PE ({pes} PEs, {:.1} MiB)",
                shape.name,
                used as f64 / pes as f64,
                used as f64 / (1 << 20) as f64
            );
        }
    }
}

fn bench_register(c: &mut Criterion<ThreadCpu>) {
    memory_report();
    let mut g = c.benchmark_group("register");
    g.sample_size(10);
    for shape in [SMALL_POOLS, HUGE_POOL] {
        let count = u64::from(shape.per_pool) * shape.pools as u64;
        g.throughput(Throughput::Elements(count));
        let hs_handles = handles(shape);
        let regs = registrations(shape, "lu");
        g.bench_function(format!("{}/lu", shape.name), |b| {
            b.iter_batched(
                || (Handlespace::new(config()), regs.clone()),
                |(mut hs, regs)| {
                    let now = Instant::now();
                    for (p, r) in regs {
                        hs.register(&hs_handles[p], r, now).unwrap();
                    }
                    hs
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

fn bench_reregister(c: &mut Criterion<ThreadCpu>) {
    let mut g = c.benchmark_group("reregister");
    g.throughput(Throughput::Elements(1));
    for shape in [SMALL_POOLS, HUGE_POOL] {
        for name in ["lu", "rr"] {
            let now = Instant::now();
            let (mut hs, hs_handles) = fill(shape, name, now);
            let mut i: u64 = 0;
            g.bench_function(format!("{}/{name}", shape.name), |b| {
                b.iter_batched(
                    || {
                        // What a decoder hands over: a fresh registration with a new load.
                        i += 1;
                        let p = (i % shape.pools as u64) as usize;
                        let id = ((i / shape.pools as u64) % u64::from(shape.per_pool)) as u32;
                        (p, registration(id, policy(name, id, i as u32)))
                    },
                    |(p, r)| hs.register(&hs_handles[p], r, now).unwrap(),
                    BatchSize::SmallInput,
                )
            });
        }
    }
    g.finish();
}

fn bench_resolve(c: &mut Criterion<ThreadCpu>) {
    let mut g = c.benchmark_group("resolve");
    g.throughput(Throughput::Elements(1));
    for shape in [SMALL_POOLS, HUGE_POOL] {
        for name in POLICIES {
            let now = Instant::now();
            let (mut hs, hs_handles) = fill(shape, name, now);
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let mut out = Vec::with_capacity(8);
            for n in [1usize, 3] {
                let mut i = 0usize;
                g.bench_function(format!("{}/{name}/n{n}", shape.name), |b| {
                    b.iter(|| {
                        i = (i + 1) % hs_handles.len();
                        hs.select_ids(&hs_handles[i], n, now, &mut rng, &mut out)
                            .unwrap();
                        black_box(out.len())
                    })
                });
            }
        }
    }
    g.finish();
}

fn config_criterion() -> Criterion<ThreadCpu> {
    Criterion::default()
        .with_measurement(ThreadCpu)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1200))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config_criterion();
    targets = bench_register, bench_reregister, bench_resolve
}
criterion_main!(benches);
