//! Distributions of the random policies at the registrar, over many draws.
//!
//! Each test draws tens of thousands of times with a fixed seed and compares
//! the counts with the policy's probabilities by Pearson's chi-square test at
//! significance 0.001, so a biased implementation fails while a correct one
//! passes for (almost) every seed.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use pool_core::handlespace::{Handlespace, Registration};
use pool_core::types::{PeId, Policy, PoolHandle, Transport, TransportProtocol, TransportUse};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn reg(id: PeId, policy: Policy) -> Registration {
    Registration {
        id,
        home: 1,
        user_transports: vec![Transport {
            protocol: TransportProtocol::Sctp,
            port: 9000,
            transport_use: TransportUse::DataOnly,
            addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        }],
        asap_transport: None,
        policy,
        registration_life: Duration::from_secs(30),
    }
}

fn pool(pes: &[(PeId, Policy)]) -> (Handlespace, PoolHandle, Instant) {
    let mut hs = Handlespace::default();
    let handle = PoolHandle::new("random-pool").unwrap();
    let now = Instant::now();
    for &(id, p) in pes {
        hs.register(&handle, reg(id, p), now).unwrap();
    }
    (hs, handle, now)
}

/// Pearson's chi-square statistic of `counts` against `expected` probabilities.
fn chi_square(counts: &[u64], probs: &[f64]) -> f64 {
    let total: u64 = counts.iter().sum();
    counts
        .iter()
        .zip(probs)
        .map(|(&c, &p)| {
            let e = p * total as f64;
            (c as f64 - e).powi(2) / e
        })
        .sum()
}

/// Chi-square critical values at p = 0.001 by degrees of freedom (1-based).
const CRITICAL_0_001: [f64; 8] = [10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12];

fn assert_fits(counts: &[u64], probs: &[f64]) {
    let stat = chi_square(counts, probs);
    let dof = counts.len() - 1;
    assert!(
        stat < CRITICAL_0_001[dof - 1],
        "chi-square {stat:.2} >= {} (dof {dof}); counts {counts:?}, probabilities {probs:?}",
        CRITICAL_0_001[dof - 1]
    );
}

/// Draws `draws` resolutions of `n` PEs; counts how often each id (1-based) comes first
/// and how often it appears at all. Checks every answer is distinct and of size `want`.
fn draw(
    pes: &[(PeId, Policy)],
    n: usize,
    want: usize,
    draws: usize,
    seed: u64,
) -> (Vec<u64>, Vec<u64>) {
    let (mut hs, handle, now) = pool(pes);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let max_id = pes.iter().map(|p| p.0).max().unwrap() as usize;
    let mut first = vec![0u64; max_id + 1];
    let mut any = vec![0u64; max_id + 1];
    let mut out = Vec::new();
    for _ in 0..draws {
        hs.select_ids(&handle, n, now, &mut rng, &mut out).unwrap();
        assert_eq!(out.len(), want);
        let distinct: HashSet<_> = out.iter().collect();
        assert_eq!(distinct.len(), out.len(), "duplicate PE in {out:?}");
        first[out[0] as usize] += 1;
        for &id in &out {
            any[id as usize] += 1;
        }
    }
    (first, any)
}

#[test]
fn random_is_uniform() {
    let pes: Vec<_> = (1..=8).map(|i| (i, Policy::Random)).collect();
    let (first, _) = draw(&pes, 1, 1, 80_000, 1);
    assert_fits(&first[1..], &[1.0 / 8.0; 8]);
}

#[test]
fn random_draws_distinct_pes_uniformly() {
    let pes: Vec<_> = (1..=8).map(|i| (i, Policy::Random)).collect();
    let (first, any) = draw(&pes, 3, 3, 40_000, 2);
    assert_fits(&first[1..], &[1.0 / 8.0; 8]);
    // Each PE is in 3 of 8 answers: per-answer inclusion is uniform.
    let total: u64 = any.iter().sum();
    assert_eq!(total, 120_000);
    assert_fits(&any[1..], &[1.0 / 8.0; 8]);
    // More than the pool holds: everyone, once.
    let (_, all) = draw(&pes, 20, 8, 100, 3);
    assert!(all[1..].iter().all(|&c| c == 100));
}

#[test]
fn weighted_random_follows_weights_and_never_draws_weight_zero() {
    let w = |weight| Policy::WeightedRandom { weight };
    let pes = [(1, w(1)), (2, w(2)), (3, w(3)), (4, w(4)), (5, w(0))];
    let (first, _) = draw(&pes, 1, 1, 100_000, 4);
    assert_eq!(first[5], 0);
    assert_fits(&first[1..5], &[0.1, 0.2, 0.3, 0.4]);
    // Asking for all: weight 0 is left out, the rest come once each.
    let (_, any) = draw(&pes, 5, 4, 1_000, 5);
    assert_eq!(&any[1..], &[1_000, 1_000, 1_000, 1_000, 0]);
}

#[test]
fn weighted_random_second_draw_is_without_replacement() {
    // Weights 1 and 3: the pair always holds both; the first follows 1:3.
    let w = |weight| Policy::WeightedRandom { weight };
    let (first, any) = draw(&[(1, w(1)), (2, w(3))], 2, 2, 40_000, 6);
    assert_eq!(&any[1..], &[40_000, 40_000]);
    assert_fits(&first[1..], &[0.25, 0.75]);
}

#[test]
fn randomized_least_used_favours_unused_capacity() {
    let rlu = |load| Policy::RandomizedLeastUsed { load };
    let max = u64::from(u32::MAX);
    // Unused capacity 4:2:1 (loads 0, 50 %, 75 %); a full PE weighs 1 in 2^32.
    let loads = [0u32, (max / 2) as u32, (max * 3 / 4) as u32, u32::MAX];
    let pes: Vec<_> = loads
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as PeId + 1, rlu(l)))
        .collect();
    let (first, _) = draw(&pes, 1, 1, 70_000, 7);
    assert_eq!(first[4], 0, "a full PE is drawn with probability 2^-32");
    let caps: Vec<f64> = loads[..3].iter().map(|&l| (u32::MAX - l) as f64).collect();
    let sum: f64 = caps.iter().sum();
    let probs: Vec<f64> = caps.iter().map(|c| c / sum).collect();
    assert_fits(&first[1..4], &probs);
    // A fully loaded pool still answers: weights never drop to 0.
    let (_, any) = draw(&[(1, rlu(u32::MAX)), (2, rlu(u32::MAX))], 1, 1, 2_000, 8);
    assert_fits(&any[1..], &[0.5, 0.5]);
}

#[test]
fn a_different_seed_gives_a_different_sequence() {
    let pes: Vec<_> = (1..=8).map(|i| (i, Policy::Random)).collect();
    let seq = |seed| {
        let (mut hs, handle, now) = pool(&pes);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..32)
            .map(|_| hs.select(&handle, 1, now, &mut rng).unwrap()[0].id)
            .collect::<Vec<_>>()
    };
    assert_eq!(seq(11), seq(11), "same seed, same draws");
    assert_ne!(seq(11), seq(12));
}
