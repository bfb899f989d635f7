//! Memory per PE, measured with a counting global allocator: the handlespace
//! must stay within 512 bytes per PE (slab, id map, selection index, expiry
//! index, owner set, and the PE's own transports) for both small and huge pools.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use pool_core::handlespace::{Handlespace, HandlespaceConfig, Registration};
use pool_core::types::{Policy, PoolHandle, Transport, TransportProtocol, TransportUse};

/// Net bytes currently allocated by the whole process.
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
        registration_life: Duration::from_secs(30),
    }
}

/// Bytes per PE for `pools` pools of `per_pool` PEs each.
fn bytes_per_pe(pools: usize, per_pool: u32, policy: Policy) -> f64 {
    let handles: Vec<PoolHandle> = (0..pools)
        .map(|i| PoolHandle::new(format!("pool-{i:05}")).unwrap())
        .collect();
    let now = Instant::now();
    let before = LIVE.load(Ordering::Relaxed);
    let mut hs = Handlespace::new(HandlespaceConfig::default());
    for h in &handles {
        for id in 0..per_pool {
            hs.register(h, registration(id, policy), now).unwrap();
        }
    }
    let used = LIVE.load(Ordering::Relaxed) - before;
    assert_eq!(hs.element_count(), pools * per_pool as usize);
    drop(hs);
    used as f64 / (pools * per_pool as usize) as f64
}

#[test]
fn at_most_512_bytes_per_pe() {
    // One test function: the allocator counter is process-wide, and tests in
    // one binary run on parallel threads.
    let cases = [
        (
            "10,000 pools x 10, LU",
            10_000,
            10,
            Policy::LeastUsed { load: 0 },
        ),
        ("10,000 pools x 10, RR", 10_000, 10, Policy::RoundRobin),
        (
            "10,000 pools x 10, WRAND",
            10_000,
            10,
            Policy::WeightedRandom { weight: 1 },
        ),
        (
            "1 pool x 100,000, LU",
            1,
            100_000,
            Policy::LeastUsed { load: 0 },
        ),
        (
            "1 pool x 100,000, RLU",
            1,
            100_000,
            Policy::RandomizedLeastUsed { load: 0 },
        ),
    ];
    for (name, pools, per_pool, policy) in cases {
        let b = bytes_per_pe(pools, per_pool, policy);
        eprintln!("{name}: {b:.0} bytes per PE");
        assert!(b <= 512.0, "{name}: {b:.0} bytes per PE");
        assert!(
            b >= 100.0,
            "{name}: {b:.0} bytes per PE is implausibly low: counter broken?"
        );
    }
}
