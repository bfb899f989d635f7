//! Registration authentication: signing on the PE side, verification and
//! replay protection on the registrar side.
//!
//! The parameter itself is [`crate::wire::auth::RegistrationAuth`]; its tag
//! is HMAC-SHA256 under the pool's registration secret over
//! [`crate::wire::auth::signed_bytes`]. A registrar accepts a tag only once
//! (nonce memory) and only when its timestamp lies within a window around the
//! registrar's wall clock, so a captured registration cannot be replayed
//! later to resurrect or move a PE.

use std::collections::{BTreeSet, HashSet};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::types::PoolHandle;
use crate::wire::auth::{signed_bytes, RegistrationAuth, AUTH_TAG_LEN};
use crate::wire::{Param, PoolElement, WireError};

/// One registration secret of a pool, named by its key id (several allow rotation).
#[derive(Clone, PartialEq, Eq)]
pub struct PoolSecret {
    /// Key identifier carried in the auth parameter.
    pub key_id: u32,
    /// The shared secret (any length; 32 random bytes recommended).
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for PoolSecret {
    // Secrets never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolSecret")
            .field("key_id", &self.key_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why a registration's authentication was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The pool requires authentication and the message carries none.
    #[error("authentication parameter missing")]
    Missing,
    /// The pool has no secret and open pools are not allowed.
    #[error("pool has no registration secret and open pools are disabled")]
    NoSecret,
    /// The key id names no secret of this pool.
    #[error("unknown key id {0}")]
    UnknownKey(u32),
    /// The tag does not verify.
    #[error("bad authentication tag")]
    BadTag,
    /// The timestamp lies outside the accepted window.
    #[error("timestamp {timestamp_ms} outside the window around {now_ms}")]
    Stale {
        /// Timestamp carried.
        timestamp_ms: u64,
        /// Registrar's wall clock.
        now_ms: u64,
    },
    /// The nonce was already used within the window.
    #[error("replayed nonce")]
    Replay,
    /// The nonce memory is full (too many authenticated registrations within one window).
    #[error("nonce memory full")]
    Overloaded,
    /// A deregistration for a secured pool arrived on an association other
    /// than the one holding the PE's authenticated registration.
    #[error("deregistration from an association that did not register the PE")]
    WrongAssociation,
}

impl AuthError {
    /// Whether the refusal counts as a replay attempt rather than a plain auth failure.
    pub fn is_replay(&self) -> bool {
        matches!(self, AuthError::Replay | AuthError::Stale { .. })
    }
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length")
}

/// Signs a registration: the auth parameter a PE appends.
pub fn sign(
    secret: &PoolSecret,
    pool_handle: &PoolHandle,
    element: &PoolElement,
    nonce: u64,
    timestamp_ms: u64,
) -> Result<RegistrationAuth, WireError> {
    let bytes = signed_bytes(pool_handle, element, secret.key_id, nonce, timestamp_ms)?;
    Ok(tag_bytes(secret, &bytes, nonce, timestamp_ms))
}

/// The auth parameter for already assembled signed bytes.
fn tag_bytes(secret: &PoolSecret, bytes: &[u8], nonce: u64, timestamp_ms: u64) -> RegistrationAuth {
    let mut m = mac(&secret.secret);
    m.update(bytes);
    let mut tag = [0u8; AUTH_TAG_LEN];
    tag.copy_from_slice(&m.finalize().into_bytes());
    RegistrationAuth {
        key_id: secret.key_id,
        nonce,
        timestamp_ms,
        tag,
    }
}

/// Checks `auth` against the secret it names, over the bytes `signed` assembles from
/// its key id, nonce and timestamp (an unencodable message cannot have been signed).
fn check_tag(
    secrets: &[PoolSecret],
    auth: &RegistrationAuth,
    signed: impl FnOnce(u32, u64, u64) -> Result<Vec<u8>, WireError>,
) -> Result<(), AuthError> {
    let secret = secrets
        .iter()
        .find(|s| s.key_id == auth.key_id)
        .ok_or(AuthError::UnknownKey(auth.key_id))?;
    let bytes =
        signed(auth.key_id, auth.nonce, auth.timestamp_ms).map_err(|_| AuthError::BadTag)?;
    let mut m = mac(&secret.secret);
    m.update(&bytes);
    m.verify_slice(&auth.tag).map_err(|_| AuthError::BadTag)
}

/// Checks a tag against the pool's secrets (constant time in the tag).
pub fn verify(
    secrets: &[PoolSecret],
    pool_handle: &PoolHandle,
    element: &PoolElement,
    auth: &RegistrationAuth,
) -> Result<(), AuthError> {
    check_tag(secrets, auth, |key_id, nonce, ts| {
        signed_bytes(pool_handle, element, key_id, nonce, ts)
    })
}

/// Remembers the nonces of accepted registrations for one time window.
///
/// Memory is bounded twice: entries older than the window are dropped (a
/// timestamp that old is refused anyway), and at most `capacity` entries are
/// kept; beyond that new registrations are refused rather than letting a
/// flood evict the nonces that protect against replay.
#[derive(Debug)]
pub struct ReplayGuard {
    window_ms: u64,
    capacity: usize,
    seen: HashSet<(PoolHandle, u32, u64)>,
    by_time: BTreeSet<(u64, PoolHandle, u32, u64)>,
}

impl ReplayGuard {
    /// A guard accepting timestamps within `window_ms` of the wall clock, remembering at most `capacity` nonces.
    pub fn new(window_ms: u64, capacity: usize) -> Self {
        Self {
            window_ms,
            capacity,
            seen: HashSet::new(),
            by_time: BTreeSet::new(),
        }
    }

    /// Number of nonces remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Accepts a (verified) auth parameter once: refuses a stale timestamp
    /// or a nonce already seen, otherwise remembers it.
    pub fn check(
        &mut self,
        now_ms: u64,
        pool_handle: &PoolHandle,
        auth: &RegistrationAuth,
    ) -> Result<(), AuthError> {
        let ts = auth.timestamp_ms;
        if ts.saturating_add(self.window_ms) < now_ms || ts > now_ms.saturating_add(self.window_ms)
        {
            return Err(AuthError::Stale {
                timestamp_ms: ts,
                now_ms,
            });
        }
        self.prune(now_ms);
        let key = (pool_handle.clone(), auth.key_id, auth.nonce);
        if self.seen.contains(&key) {
            return Err(AuthError::Replay);
        }
        if self.seen.len() >= self.capacity {
            return Err(AuthError::Overloaded);
        }
        self.by_time.insert((ts, key.0.clone(), key.1, key.2));
        self.seen.insert(key);
        Ok(())
    }

    /// Forgets nonces whose timestamps fell out of the window.
    fn prune(&mut self, now_ms: u64) {
        while let Some((ts, ..)) = self.by_time.first() {
            if ts.saturating_add(self.window_ms) >= now_ms {
                break;
            }
            if let Some((_, h, k, n)) = self.by_time.pop_first() {
                self.seen.remove(&(h, k, n));
            }
        }
    }
}

/// Domain separation prefix of [`deregistration_signed_bytes`]: a
/// registration tag can never verify as a deregistration tag and back.
pub const DEREGISTRATION_DOMAIN: &[u8] = b"poolgate deregistration auth v1\0";

/// The bytes a deregistration's tag covers: [`DEREGISTRATION_DOMAIN`], the
/// encoded pool handle and PE identifier parameters, then key id, nonce and
/// timestamp (big-endian).
///
/// Ready for the day ASAP_DEREGISTRATION carries the auth parameter (the
/// codec does not decode it there yet); until then the registrar binds
/// deregistrations of secured pools to the registering association.
pub fn deregistration_signed_bytes(
    pool_handle: &PoolHandle,
    pe_id: crate::types::PeId,
    key_id: u32,
    nonce: u64,
    timestamp_ms: u64,
) -> Result<Vec<u8>, WireError> {
    let mut buf = Vec::with_capacity(96);
    buf.extend_from_slice(DEREGISTRATION_DOMAIN);
    Param::PoolHandle(pool_handle.clone()).encode(&mut buf)?;
    Param::PeId(pe_id).encode(&mut buf)?;
    buf.extend_from_slice(&key_id.to_be_bytes());
    buf.extend_from_slice(&nonce.to_be_bytes());
    buf.extend_from_slice(&timestamp_ms.to_be_bytes());
    Ok(buf)
}

/// Signs a deregistration (see [`deregistration_signed_bytes`]).
pub fn sign_deregistration(
    secret: &PoolSecret,
    pool_handle: &PoolHandle,
    pe_id: crate::types::PeId,
    nonce: u64,
    timestamp_ms: u64,
) -> Result<RegistrationAuth, WireError> {
    let bytes =
        deregistration_signed_bytes(pool_handle, pe_id, secret.key_id, nonce, timestamp_ms)?;
    Ok(tag_bytes(secret, &bytes, nonce, timestamp_ms))
}

/// Checks a deregistration tag against the pool's secrets (constant time in the tag).
pub fn verify_deregistration(
    secrets: &[PoolSecret],
    pool_handle: &PoolHandle,
    pe_id: crate::types::PeId,
    auth: &RegistrationAuth,
) -> Result<(), AuthError> {
    check_tag(secrets, auth, |key_id, nonce, ts| {
        deregistration_signed_bytes(pool_handle, pe_id, key_id, nonce, ts)
    })
}
