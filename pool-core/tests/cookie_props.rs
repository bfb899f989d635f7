//! Property tests for state cookies.

use pool_core::cookie::{parse, read_public, replace_public, CookieParts, KeyRing};
use pool_core::types::PoolHandle;
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn ring() -> KeyRing {
    KeyRing::new([(7u16, [0x42u8; 32]), (9, [0x24; 32])]).unwrap()
}

fn pool() -> PoolHandle {
    PoolHandle::new(b"pool".to_vec()).unwrap()
}

fn arb_parts() -> impl Strategy<Value = CookieParts> {
    (
        proptest::collection::vec(any::<u8>(), 0..200),
        proptest::collection::vec(any::<u8>(), 0..200),
        proptest::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(public, immutable, private)| CookieParts {
            public,
            immutable,
            private,
        })
}

proptest! {
    #[test]
    fn seal_open_round_trip(parts in arb_parts(), seed in any::<u64>(), exp in 1u64..u64::MAX) {
        let r = ring();
        let c = r.seal(&pool(), &parts, exp, &mut ChaCha20Rng::seed_from_u64(seed)).unwrap();
        prop_assert_eq!(r.open(&pool(), &c, exp - 1).unwrap(), parts);
    }

    #[test]
    fn any_bit_flip_outside_public_is_rejected(parts in arb_parts(), seed in any::<u64>(), pick in any::<usize>(), bit in 0u8..8) {
        let r = ring();
        let mut c = r.seal(&pool(), &parts, 1_000, &mut ChaCha20Rng::seed_from_u64(seed)).unwrap();
        let pub_start = 37;
        let pub_end = pub_start + parts.public.len();
        let candidates = c.len() - parts.public.len();
        let mut i = pick % candidates;
        if i >= pub_start { i += parts.public.len(); }
        prop_assert!(i < pub_start || i >= pub_end);
        c[i] ^= 1 << bit;
        prop_assert!(r.open(&pool(), &c, 0).is_err(), "flip at byte {} accepted", i);
    }

    #[test]
    fn public_changes_are_accepted_and_visible(parts in arb_parts(), new_public in proptest::collection::vec(any::<u8>(), 0..300), seed in any::<u64>()) {
        let r = ring();
        let c = r.seal(&pool(), &parts, 1_000, &mut ChaCha20Rng::seed_from_u64(seed)).unwrap();
        let c2 = replace_public(&c, &new_public).unwrap();
        prop_assert_eq!(read_public(&c2).unwrap(), &new_public[..]);
        let opened = r.open(&pool(), &c2, 0).unwrap();
        prop_assert_eq!(opened.public, new_public);
        prop_assert_eq!(opened.immutable, parts.immutable);
        prop_assert_eq!(opened.private, parts.private);
    }

    #[test]
    fn in_place_public_byte_changes_are_accepted(parts in arb_parts(), pick in any::<usize>(), val in any::<u8>()) {
        prop_assume!(!parts.public.is_empty());
        let r = ring();
        let mut c = r.seal(&pool(), &parts, 1_000, &mut ChaCha20Rng::seed_from_u64(1)).unwrap();
        let i = 37 + pick % parts.public.len();
        c[i] = val;
        let opened = r.open(&pool(), &c, 0).unwrap();
        prop_assert_eq!(opened.public[i - 37], val);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), now in any::<u64>()) {
        let r = ring();
        let _ = r.open(&pool(), &bytes, now);
        let _ = parse(&bytes);
        let _ = replace_public(&bytes, b"x");
    }

    #[test]
    fn near_valid_bytes_never_panic(parts in arb_parts(), cut in any::<usize>(), extra in proptest::collection::vec(any::<u8>(), 0..40)) {
        let r = ring();
        let mut c = r.seal(&pool(), &parts, 1_000, &mut ChaCha20Rng::seed_from_u64(3)).unwrap();
        let cut = cut % (c.len() + 1);
        c.truncate(cut);
        c.extend_from_slice(&extra);
        let _ = r.open(&pool(), &c, 0);
        let _ = replace_public(&c, &extra);
    }
}
