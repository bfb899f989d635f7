//! Sealing/opening state cookies: every rejection has its own error variant.

use pool_core::cookie::{
    parse, read_immutable, read_public, replace_public, CookieError, CookieParts, KeyRing,
    KeyRingError, MAX_COOKIE_LEN, MIN_KEY_LEN, OVERHEAD,
};
use pool_core::types::PoolHandle;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn pool(name: &str) -> PoolHandle {
    PoolHandle::new(name.as_bytes().to_vec()).unwrap()
}

fn parts() -> CookieParts {
    CookieParts {
        public: b"answered=3".to_vec(),
        immutable: b"SELECT 2".to_vec(),
        private: b"AUTH s3cret".to_vec(),
    }
}

fn ring(ids: &[(u16, u8)]) -> KeyRing {
    KeyRing::new(ids.iter().map(|&(id, fill)| (id, vec![fill; 32]))).unwrap()
}

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(7)
}

#[test]
fn round_trip_and_private_is_encrypted() {
    let r = ring(&[(1, 0xaa)]);
    let c = r.seal(&pool("db"), &parts(), 1_000, &mut rng()).unwrap();
    assert_eq!(c.len(), OVERHEAD + 10 + 8 + 11);
    assert!(
        !c.windows(6).any(|w| w == b"s3cret"),
        "private part must not be in clear"
    );
    assert_eq!(r.open(&pool("db"), &c, 999).unwrap(), parts());
    assert_eq!(read_public(&c).unwrap(), b"answered=3");
    assert_eq!(read_immutable(&c).unwrap(), b"SELECT 2");
}

#[test]
fn nonces_differ_between_seals() {
    let r = ring(&[(1, 0xaa)]);
    let mut g = rng();
    let a = r.seal(&pool("db"), &parts(), 1_000, &mut g).unwrap();
    let b = r.seal(&pool("db"), &parts(), 1_000, &mut g).unwrap();
    assert_ne!(parse(&a).unwrap().nonce, parse(&b).unwrap().nonce);
    assert_ne!(a, b);
}

#[test]
fn public_part_may_be_rewritten_by_the_pu() {
    let r = ring(&[(1, 0xaa)]);
    let c = r.seal(&pool("db"), &parts(), 1_000, &mut rng()).unwrap();
    let c2 = replace_public(&c, b"answered=123456").unwrap();
    let opened = r.open(&pool("db"), &c2, 0).unwrap();
    assert_eq!(opened.public, b"answered=123456");
    assert_eq!(opened.private, parts().private);
    let c3 = replace_public(&c2, b"").unwrap();
    assert_eq!(r.open(&pool("db"), &c3, 0).unwrap().public, b"");
}

#[test]
fn tampered_immutable_part_is_rejected() {
    let r = ring(&[(1, 0xaa)]);
    let mut c = r.seal(&pool("db"), &parts(), 1_000, &mut rng()).unwrap();
    let at = c.windows(8).position(|w| w == b"SELECT 2").unwrap();
    c[at + 7] = b'3';
    let e = r.open(&pool("db"), &c, 0).unwrap_err();
    assert_eq!(e, CookieError::Tampered);
    assert_eq!(e.kind(), "tampered");
}

#[test]
fn truncated_and_malformed() {
    let r = ring(&[(1, 0xaa)]);
    let c = r.seal(&pool("db"), &parts(), 1_000, &mut rng()).unwrap();
    for cut in [0, 1, 10, 36, 37, c.len() - 1] {
        let e = r.open(&pool("db"), &c[..cut], 0).unwrap_err();
        assert!(
            matches!(e, CookieError::Truncated { .. }),
            "cut {cut}: {e:?}"
        );
        assert_eq!(e.kind(), "truncated");
    }
    let mut longer = c.clone();
    longer.push(0);
    let e = r.open(&pool("db"), &longer, 0).unwrap_err();
    assert!(matches!(e, CookieError::Malformed(_)));
    assert_eq!(e.kind(), "malformed");
}

#[test]
fn foreign_pool_is_distinct() {
    let r = ring(&[(1, 0xaa)]);
    let c = r.seal(&pool("db"), &parts(), 1_000, &mut rng()).unwrap();
    let e = r.open(&pool("web"), &c, 0).unwrap_err();
    assert_eq!(e, CookieError::ForeignPool);
    assert_eq!(e.kind(), "foreign_pool");
}

#[test]
fn expired_is_distinct_and_boundary_is_exclusive() {
    let r = ring(&[(1, 0xaa)]);
    let c = r.seal(&pool("db"), &parts(), 1_000, &mut rng()).unwrap();
    assert!(r.open(&pool("db"), &c, 999).is_ok());
    let e = r.open(&pool("db"), &c, 1_000).unwrap_err();
    assert_eq!(
        e,
        CookieError::Expired {
            expired_at_ms: 1_000,
            now_ms: 1_000
        }
    );
    assert_eq!(e.kind(), "expired");
}

#[test]
fn unknown_key_and_wrong_key() {
    let old = ring(&[(1, 0xaa)]);
    let c = old.seal(&pool("db"), &parts(), 1_000, &mut rng()).unwrap();
    let other = ring(&[(2, 0xbb)]);
    let e = other.open(&pool("db"), &c, 0).unwrap_err();
    assert_eq!(e, CookieError::UnknownKey(1));
    assert_eq!(e.kind(), "unknown_key");
    // Same id, different secret: the MAC fails.
    let impostor = ring(&[(1, 0xcc)]);
    assert_eq!(
        impostor.open(&pool("db"), &c, 0).unwrap_err(),
        CookieError::Tampered
    );
}

#[test]
fn rotation_newest_seals_all_open() {
    let old = ring(&[(1, 0xaa)]);
    let c_old = old.seal(&pool("db"), &parts(), 1_000, &mut rng()).unwrap();
    let rotated = ring(&[(1, 0xaa), (2, 0xbb)]);
    assert_eq!(rotated.sealing_key_id(), 2);
    let c_new = rotated
        .seal(&pool("db"), &parts(), 1_000, &mut rng())
        .unwrap();
    assert_eq!(parse(&c_new).unwrap().key_id, 2);
    assert!(rotated.open(&pool("db"), &c_old, 0).is_ok());
    assert!(rotated.open(&pool("db"), &c_new, 0).is_ok());
    // A PE that has not learnt key 2 yet reports it as unknown.
    assert_eq!(
        old.open(&pool("db"), &c_new, 0).unwrap_err(),
        CookieError::UnknownKey(2)
    );
}

#[test]
fn unsupported_version() {
    let r = ring(&[(1, 0xaa)]);
    let mut c = r.seal(&pool("db"), &parts(), 1_000, &mut rng()).unwrap();
    c[0] = 2;
    let e = r.open(&pool("db"), &c, 0).unwrap_err();
    assert_eq!(e, CookieError::UnsupportedVersion(2));
    assert_eq!(e.kind(), "unsupported_version");
    // Even a lone version byte is reported as a version problem.
    assert_eq!(
        r.open(&pool("db"), &[9], 0).unwrap_err(),
        CookieError::UnsupportedVersion(9)
    );
}

#[test]
fn size_cap() {
    let r = ring(&[(1, 0xaa)]);
    let max_payload = MAX_COOKIE_LEN - OVERHEAD;
    let fits = CookieParts {
        public: vec![],
        immutable: vec![1; max_payload],
        private: vec![],
    };
    let c = r.seal(&pool("db"), &fits, 1_000, &mut rng()).unwrap();
    assert_eq!(c.len(), MAX_COOKIE_LEN);
    assert!(r.open(&pool("db"), &c, 0).is_ok());
    let too_big = CookieParts {
        private: vec![1; max_payload + 1],
        ..CookieParts::default()
    };
    let e = r
        .seal(&pool("db"), &too_big, 1_000, &mut rng())
        .unwrap_err();
    assert_eq!(
        e,
        CookieError::TooLarge {
            len: MAX_COOKIE_LEN + 1,
            max: MAX_COOKIE_LEN
        }
    );
    assert_eq!(e.kind(), "too_large");
    assert!(matches!(
        replace_public(&c, b"x").unwrap_err(),
        CookieError::TooLarge { .. }
    ));
    let huge = vec![1u8; MAX_COOKIE_LEN + 1];
    assert!(matches!(
        r.open(&pool("db"), &huge, 0).unwrap_err(),
        CookieError::TooLarge { .. }
    ));
}

#[test]
fn key_ring_validation() {
    let short = KeyRing::new([(1u16, vec![0u8; MIN_KEY_LEN - 1])]).unwrap_err();
    assert_eq!(
        short,
        KeyRingError::KeyTooShort {
            id: 1,
            len: 31,
            min: 32
        }
    );
    assert_eq!(
        KeyRing::new(Vec::<(u16, Vec<u8>)>::new()).unwrap_err(),
        KeyRingError::Empty
    );
    let dup = KeyRing::new([(1u16, [0u8; 32]), (1, [1; 32])]).unwrap_err();
    assert_eq!(dup, KeyRingError::DuplicateId(1));
    let long = KeyRing::new([(3u16, vec![5u8; 100])]).unwrap();
    assert!(!format!("{long:?}").contains('5'.to_string().repeat(3).as_str()));
}

#[test]
fn all_kinds_are_distinct() {
    let kinds = [
        CookieError::TooLarge { len: 0, max: 0 }.kind(),
        CookieError::Truncated { need: 0, have: 0 }.kind(),
        CookieError::Malformed("x").kind(),
        CookieError::UnsupportedVersion(0).kind(),
        CookieError::UnknownKey(0).kind(),
        CookieError::ForeignPool.kind(),
        CookieError::Tampered.kind(),
        CookieError::Expired {
            expired_at_ms: 0,
            now_ms: 0,
        }
        .kind(),
    ];
    let set: std::collections::HashSet<_> = kinds.iter().collect();
    assert_eq!(set.len(), kinds.len());
}
