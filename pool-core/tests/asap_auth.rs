//! Registration authentication helpers: tags, domain separation, replay guard.

use pool_core::asap::auth::{
    sign, sign_deregistration, verify, verify_deregistration, AuthError, PoolSecret, ReplayGuard,
};
use pool_core::types::{Policy, PoolHandle, Transport, TransportProtocol, TransportUse};
use pool_core::wire::{PoolElement, SelectionPolicy};
use proptest::prelude::*;

fn key(id: u32, s: &[u8]) -> PoolSecret {
    PoolSecret {
        key_id: id,
        secret: s.to_vec(),
    }
}

fn element(id: u32, load: u32) -> PoolElement {
    PoolElement {
        id,
        home_registrar: 0,
        registration_life: 5000,
        user_transport: Transport {
            protocol: TransportProtocol::Tcp,
            port: 80,
            transport_use: TransportUse::DataOnly,
            addresses: vec!["192.0.2.1".parse().unwrap()],
        },
        policy: SelectionPolicy::Known(Policy::LeastUsed { load }),
        asap_transport: None,
    }
}

fn h(s: &str) -> PoolHandle {
    PoolHandle::new(s).unwrap()
}

#[test]
fn registration_and_deregistration_tags_do_not_cross() {
    let k = key(1, b"secret");
    let d = sign_deregistration(&k, &h("p"), 7, 1, 2).unwrap();
    assert_eq!(
        verify_deregistration(std::slice::from_ref(&k), &h("p"), 7, &d),
        Ok(())
    );
    assert_eq!(
        verify_deregistration(std::slice::from_ref(&k), &h("p"), 8, &d),
        Err(AuthError::BadTag)
    );
    assert_eq!(
        verify_deregistration(std::slice::from_ref(&k), &h("q"), 7, &d),
        Err(AuthError::BadTag)
    );
    // The same key, nonce and time used for a registration gives a different tag.
    let r = sign(&k, &h("p"), &element(7, 0), 1, 2).unwrap();
    assert_ne!(r.tag, d.tag);
    assert_eq!(
        verify(&[k], &h("p"), &element(7, 0), &d),
        Err(AuthError::BadTag)
    );
}

#[test]
fn secrets_are_not_printed() {
    let shown = format!("{:?}", key(3, b"hunter2"));
    assert!(!shown.contains("hunter2") && shown.contains("key_id: 3"));
}

#[test]
fn replay_guard_forgets_only_what_the_window_refuses_anyway() {
    let k = key(1, b"s");
    let mut g = ReplayGuard::new(1000, 3);
    let a = sign(&k, &h("p"), &element(1, 0), 10, 5000).unwrap();
    assert_eq!(g.check(5000, &h("p"), &a), Ok(()));
    assert_eq!(g.check(5999, &h("p"), &a), Err(AuthError::Replay));
    // Same nonce in another pool is another registration.
    assert_eq!(g.check(5000, &h("q"), &a), Ok(()));
    // Once the timestamp is out of the window, the tag is refused as stale.
    assert!(matches!(
        g.check(6001, &h("p"), &a),
        Err(AuthError::Stale { .. })
    ));
    // Capacity: a third fits, a fourth (fresh) does not until old ones age out.
    let b = sign(&k, &h("p"), &element(1, 0), 11, 5500).unwrap();
    let c = sign(&k, &h("p"), &element(1, 0), 12, 5500).unwrap();
    assert_eq!(g.check(5500, &h("p"), &b), Ok(()));
    assert_eq!(g.check(5500, &h("p"), &c), Err(AuthError::Overloaded));
    assert_eq!(g.len(), 3);
    // At 6001 the two entries stamped 5000 are pruned.
    assert_eq!(g.check(6001, &h("p"), &c), Ok(()));
    assert_eq!(g.len(), 2);
}

proptest! {
    /// Any change of any signed field breaks the tag.
    #[test]
    fn any_field_change_breaks_the_tag(
        id in any::<u32>(), load in any::<u32>(), nonce in any::<u64>(), ts in any::<u64>(),
        which in 0..5usize, flip in 1..u32::MAX,
    ) {
        let k = key(1, b"pool secret");
        let el = element(id, load);
        let auth = sign(&k, &h("pool"), &el, nonce, ts).unwrap();
        prop_assert_eq!(verify(std::slice::from_ref(&k), &h("pool"), &el, &auth), Ok(()));
        let mut el2 = el.clone();
        let mut auth2 = auth.clone();
        match which {
            0 => el2.id ^= flip,
            1 => el2.policy = SelectionPolicy::Known(Policy::LeastUsed { load: load ^ flip }),
            2 => auth2.nonce ^= u64::from(flip),
            3 => auth2.timestamp_ms ^= u64::from(flip),
            _ => auth2.tag[(flip % 32) as usize] ^= 1,
        }
        prop_assert_eq!(verify(&[k], &h("pool"), &el2, &auth2), Err(AuthError::BadTag));
    }
}
