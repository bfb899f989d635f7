//! Pool-user side selection over a cached handle resolution answer.

use pool_core::policy::PuSelector;
use pool_core::types::{PeId, Policy};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn picks(sel: &mut PuSelector, n: usize) -> Vec<PeId> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    (0..n).map(|_| sel.select(&mut rng).unwrap()).collect()
}

#[test]
fn empty_cache_selects_nothing() {
    let mut sel = PuSelector::new();
    assert!(sel.is_empty());
    assert_eq!(sel.select(&mut ChaCha8Rng::seed_from_u64(0)), None);
}

#[test]
fn round_robin_walks_the_answer_in_order_and_survives_refresh() {
    let mut sel = PuSelector::new();
    sel.merge([
        (5, Policy::RoundRobin),
        (7, Policy::RoundRobin),
        (9, Policy::RoundRobin),
    ]);
    assert_eq!(picks(&mut sel, 4), [5, 7, 9, 5]);
    // A refresh with the same PEs keeps the rotation; a new one queues last.
    sel.merge([
        (5, Policy::RoundRobin),
        (7, Policy::RoundRobin),
        (11, Policy::RoundRobin),
    ]);
    assert_eq!(picks(&mut sel, 4), [7, 9, 5, 11]);
    assert!(sel.remove(9));
    assert!(!sel.remove(9));
    assert_eq!(picks(&mut sel, 3), [7, 5, 11]);
    assert_eq!(sel.ids().collect::<Vec<_>>(), [5, 7, 11]);
}

#[test]
fn weighted_round_robin_honours_weights() {
    let w = |weight| Policy::WeightedRoundRobin { weight };
    let mut sel = PuSelector::new();
    sel.merge([(1, w(2)), (2, w(1)), (3, w(0))]);
    assert_eq!(picks(&mut sel, 6), [1, 1, 2, 1, 1, 2]);
}

#[test]
fn least_used_takes_lowest_load_and_rotates_ties() {
    let lu = |load| Policy::LeastUsed { load };
    let mut sel = PuSelector::new();
    sel.merge([(1, lu(30)), (2, lu(10)), (3, lu(10))]);
    assert_eq!(picks(&mut sel, 4), [2, 3, 2, 3]);
}

#[test]
fn least_used_with_degradation_degrades_locally_and_resets_on_refresh() {
    let lud = |load| Policy::LeastUsedDegradation {
        load,
        degradation: 10,
    };
    let mut sel = PuSelector::new();
    sel.merge([(1, lud(0)), (2, lud(25))]);
    // 1: 0,10,20,30 ; 2: 25,35
    assert_eq!(picks(&mut sel, 5), [1, 1, 1, 2, 1]);
    // Fresh loads from the registrar replace the local estimate.
    sel.merge([(1, lud(100)), (2, lud(25))]);
    assert_eq!(picks(&mut sel, 3), [2, 2, 2]);
}

#[test]
fn priority_and_priority_least_used() {
    let p = |priority| Policy::Priority { priority };
    let mut sel = PuSelector::new();
    sel.merge([(1, p(1)), (2, p(9)), (3, p(9))]);
    assert_eq!(picks(&mut sel, 3), [2, 3, 2]);

    let plu = |load, increment| Policy::PriorityLeastUsed { load, increment };
    let mut sel = PuSelector::new();
    sel.merge([(1, plu(10, 100)), (2, plu(50, 5))]);
    assert_eq!(picks(&mut sel, 2), [2, 2]);
}

#[test]
fn random_policies_draw_by_weight() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut sel = PuSelector::new();
    sel.merge([
        (1, Policy::WeightedRandom { weight: 1 }),
        (2, Policy::WeightedRandom { weight: 3 }),
        (3, Policy::WeightedRandom { weight: 0 }),
    ]);
    let mut counts = [0u32; 4];
    for _ in 0..40_000 {
        counts[sel.select(&mut rng).unwrap() as usize] += 1;
    }
    assert_eq!(counts[3], 0);
    // Expected 10,000 : 30,000; binomial sd ~87, allow 5 sd.
    assert!((counts[1] as i64 - 10_000).abs() < 450, "{counts:?}");

    let mut sel = PuSelector::new();
    sel.merge((1..=4).map(|i| (i, Policy::Random)));
    let mut counts = [0u32; 5];
    for _ in 0..40_000 {
        counts[sel.select(&mut rng).unwrap() as usize] += 1;
    }
    // Expected 10,000 each; sd ~87, allow 5 sd.
    assert!(
        counts[1..].iter().all(|&c| (c as i64 - 10_000).abs() < 450),
        "{counts:?}"
    );

    let mut sel = PuSelector::new();
    sel.merge([
        (1, Policy::RandomizedLeastUsed { load: 0 }),
        (2, Policy::RandomizedLeastUsed { load: u32::MAX }),
    ]);
    assert!((0..1_000).all(|_| sel.select(&mut rng) == Some(1)));

    let mut sel = PuSelector::new();
    sel.merge([(1, Policy::WeightedRandom { weight: 0 })]);
    assert_eq!(sel.select(&mut rng), None, "all weights 0: nothing to pick");
}
