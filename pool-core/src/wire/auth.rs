//! poolgate extension parameter: authentication of registrations.
//!
//! RFC 5352 registrations are unauthenticated; anyone who can reach a
//! registrar can register a pool element (or impersonate one). poolgate PEs
//! may append a [`RegistrationAuth`] parameter to ASAP_REGISTRATION: an
//! HMAC-SHA256 tag over [`signed_bytes`] under a pool key named by `key_id`,
//! with a nonce and timestamp against replay. Verification policy (keys,
//! replay window) belongs to the registrar, not to this codec.
//!
//! Type code **0x8001**: the two high bits `10` mean "skip this parameter
//! and continue" (RFC 5354 §2.1), so a registrar that does not know it —
//! RSPLIB, for instance — accepts the registration as if it were absent.
//! 0x8001 lies in no range RFC 5354 or RSPLIB uses (RSPLIB's private
//! handle-resolution option is 0x803f).
//!
//! Value layout (52 bytes, so the parameter is 56 bytes and needs no padding):
//! ```text
//!  key id (32) | nonce (64) | timestamp in ms since the Unix epoch (64) | HMAC-SHA256 tag (256)
//! ```

use super::error::WireError;
use super::param::{PRef, PoolElement};
use super::Fields;
use crate::types::PoolHandle;

/// Parameter type of the registration authentication extension.
pub const AUTH_PARAM_TYPE: u16 = 0x8001;

/// Length of the HMAC-SHA256 tag.
pub const AUTH_TAG_LEN: usize = 32;

/// Domain separation prefix of [`signed_bytes`], so that a tag computed for
/// a registration can never verify as a tag over anything else.
pub const AUTH_DOMAIN: &[u8] = b"poolgate registration auth v1\0";

/// The registration authentication extension parameter.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RegistrationAuth {
    /// Which pool key made the tag.
    pub key_id: u32,
    /// Random nonce chosen by the PE for this registration.
    pub nonce: u64,
    /// When the PE made the tag, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// HMAC-SHA256 over [`signed_bytes`].
    pub tag: [u8; AUTH_TAG_LEN],
}

impl RegistrationAuth {
    pub(crate) fn encode_value(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.key_id.to_be_bytes());
        buf.extend_from_slice(&self.nonce.to_be_bytes());
        buf.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        buf.extend_from_slice(&self.tag);
    }

    pub(crate) fn decode_value(value: &[u8]) -> Result<Self, WireError> {
        if value.len() != 4 + 8 + 8 + AUTH_TAG_LEN {
            return Err(WireError::BadLength {
                length: value.len() + 4,
                available: 4 + 4 + 8 + 8 + AUTH_TAG_LEN,
            });
        }
        let mut f = Fields::new(value);
        let key_id = f.u32()?;
        let nonce = f.u64()?;
        let timestamp_ms = f.u64()?;
        let mut tag = [0u8; AUTH_TAG_LEN];
        tag.copy_from_slice(f.take(AUTH_TAG_LEN)?);
        Ok(Self {
            key_id,
            nonce,
            timestamp_ms,
            tag,
        })
    }
}

/// The bytes a registration's HMAC tag covers: [`AUTH_DOMAIN`], then the
/// encoded pool handle and pool element parameters exactly as they appear in
/// the message, then key id, nonce and timestamp (big-endian).
///
/// Signing the encoded parameters (rather than the whole message) lets the
/// tag be computed before the auth parameter itself is appended.
pub fn signed_bytes(
    pool_handle: &PoolHandle,
    element: &PoolElement,
    key_id: u32,
    nonce: u64,
    timestamp_ms: u64,
) -> Result<Vec<u8>, WireError> {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(AUTH_DOMAIN);
    PRef::PoolHandle(pool_handle).encode(&mut buf)?;
    PRef::PoolElement(element).encode(&mut buf)?;
    buf.extend_from_slice(&key_id.to_be_bytes());
    buf.extend_from_slice(&nonce.to_be_bytes());
    buf.extend_from_slice(&timestamp_ms.to_be_bytes());
    Ok(buf)
}
