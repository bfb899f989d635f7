//! Authentication between registrars: an HMAC-SHA256 trailer on every ENRP message.
//!
//! RFC 5353 leaves ENRP unauthenticated (it points at TLS/IPsec). poolgate uses
//! the approach of its ASAP registration extension ([`crate::wire::auth`]): a
//! shared secret and an HMAC tag in a *skip*-type parameter, so that an ENRP
//! implementation that does not know it (RSPLIB, Wireshark) still parses the
//! message.
//!
//! The parameter, type **0x8002**, is always the last one of the message:
//! ```text
//!  type 0x8002 (16) | length 48 (16) | key id (32) | sequence (64) | HMAC-SHA256 (256)
//! ```
//! The tag covers [`ENRP_AUTH_DOMAIN`] and the whole message up to (not
//! including) the tag, with the message length field already counting the
//! parameter, so nothing in the message can be changed, cut or appended.
//!
//! Replay: the sequence number is `unix_ms << 16 | counter`; a receiver
//! accepts from each sender only increasing sequence numbers whose time lies
//! within a window of its own clock, so a captured message can be replayed
//! neither on the same association nor later, after a restart.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Parameter type of the ENRP authentication trailer (skip, do not report).
pub const ENRP_AUTH_PARAM_TYPE: u16 = 0x8002;
/// Bytes of the trailer parameter (header, key id, sequence, tag).
pub const ENRP_AUTH_PARAM_LEN: usize = 4 + 4 + 8 + 32;
/// Domain separation: an ENRP tag never verifies as an ASAP registration tag.
pub const ENRP_AUTH_DOMAIN: &[u8] = b"poolgate enrp auth v1\0";

/// The shared ENRP secret of an operation scope.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrpSecret {
    /// Key identifier carried in the trailer (rotation: accept several).
    pub key_id: u32,
    /// The secret bytes.
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for EnrpSecret {
    // Secrets never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrpSecret")
            .field("key_id", &self.key_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why an ENRP message failed authentication.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnrpAuthError {
    /// No trailer although a secret is configured.
    #[error("ENRP authentication trailer missing")]
    Missing,
    /// The key id names no configured secret.
    #[error("unknown ENRP key id {0}")]
    UnknownKey(u32),
    /// The tag does not verify.
    #[error("bad ENRP authentication tag")]
    BadTag,
    /// The message is too short or its length field disagrees with the bytes.
    #[error("malformed ENRP message framing")]
    Framing,
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length")
}

/// Appends the trailer to an encoded ENRP message and fixes its length field.
pub fn seal(buf: &mut Vec<u8>, secret: &EnrpSecret, sequence: u64) -> Result<(), EnrpAuthError> {
    if buf.len() < 12 || buf.len() % 4 != 0 {
        return Err(EnrpAuthError::Framing);
    }
    let total = buf.len() + ENRP_AUTH_PARAM_LEN;
    let len16 = u16::try_from(total).map_err(|_| EnrpAuthError::Framing)?;
    buf[2..4].copy_from_slice(&len16.to_be_bytes());
    buf.extend_from_slice(&ENRP_AUTH_PARAM_TYPE.to_be_bytes());
    buf.extend_from_slice(&(ENRP_AUTH_PARAM_LEN as u16).to_be_bytes());
    buf.extend_from_slice(&secret.key_id.to_be_bytes());
    buf.extend_from_slice(&sequence.to_be_bytes());
    let mut m = mac(&secret.secret);
    m.update(ENRP_AUTH_DOMAIN);
    m.update(buf);
    buf.extend_from_slice(&m.finalize().into_bytes());
    Ok(())
}

/// Checks the trailer of a received message; returns the sequence number.
///
/// Only framing and the tag are checked here; the replay window is the
/// caller's (it knows the sender and the clock).
pub fn open(buf: &[u8], secrets: &[EnrpSecret]) -> Result<u64, EnrpAuthError> {
    let n = buf.len();
    if n < 12 + ENRP_AUTH_PARAM_LEN || n % 4 != 0 {
        return Err(EnrpAuthError::Missing);
    }
    if usize::from(u16::from_be_bytes([buf[2], buf[3]])) != n {
        return Err(EnrpAuthError::Framing);
    }
    let p = &buf[n - ENRP_AUTH_PARAM_LEN..];
    if u16::from_be_bytes([p[0], p[1]]) != ENRP_AUTH_PARAM_TYPE
        || usize::from(u16::from_be_bytes([p[2], p[3]])) != ENRP_AUTH_PARAM_LEN
    {
        return Err(EnrpAuthError::Missing);
    }
    let key_id = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&p[8..16]);
    let secret = secrets
        .iter()
        .find(|s| s.key_id == key_id)
        .ok_or(EnrpAuthError::UnknownKey(key_id))?;
    let mut m = mac(&secret.secret);
    m.update(ENRP_AUTH_DOMAIN);
    m.update(&buf[..n - 32]);
    m.verify_slice(&buf[n - 32..])
        .map_err(|_| EnrpAuthError::BadTag)?;
    Ok(u64::from_be_bytes(seq))
}

/// The wall-clock milliseconds inside a sequence number.
pub fn sequence_time_ms(sequence: u64) -> u64 {
    sequence >> 16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::enrp::{EnrpBody, EnrpMessage};

    fn secret() -> EnrpSecret {
        EnrpSecret {
            key_id: 7,
            secret: b"0123456789abcdef".to_vec(),
        }
    }

    fn presence() -> Vec<u8> {
        EnrpMessage {
            sender: 1,
            receiver: 2,
            body: EnrpBody::Presence {
                reply_required: true,
                checksum: 0xbeef,
                server_info: None,
            },
        }
        .to_bytes()
        .unwrap()
    }

    #[test]
    fn sealed_message_still_decodes_and_verifies() {
        let mut b = presence();
        seal(&mut b, &secret(), 42 << 16).unwrap();
        assert_eq!(open(&b, &[secret()]).unwrap(), 42 << 16);
        // The codec skips the unknown 0x8002 parameter (high bits 10).
        let m = EnrpMessage::decode(&b).unwrap();
        assert_eq!(m.sender, 1);
        assert!(matches!(
            m.body,
            EnrpBody::Presence {
                checksum: 0xbeef,
                ..
            }
        ));
    }

    #[test]
    fn any_flipped_bit_breaks_the_tag() {
        let mut b = presence();
        seal(&mut b, &secret(), 1).unwrap();
        for i in 0..b.len() {
            for bit in 0..8 {
                let mut c = b.clone();
                c[i] ^= 1 << bit;
                assert!(open(&c, &[secret()]).is_err(), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn wrong_secret_missing_trailer_and_unknown_key_are_refused() {
        let mut b = presence();
        seal(&mut b, &secret(), 1).unwrap();
        let other = EnrpSecret {
            key_id: 7,
            secret: b"another secret!!".to_vec(),
        };
        assert_eq!(open(&b, &[other]), Err(EnrpAuthError::BadTag));
        let rotated = EnrpSecret {
            key_id: 8,
            ..secret()
        };
        assert_eq!(open(&b, &[rotated]), Err(EnrpAuthError::UnknownKey(7)));
        assert_eq!(open(&presence(), &[secret()]), Err(EnrpAuthError::Missing));
        // Truncation that keeps the length field consistent is still caught.
        let mut cut = b[..b.len() - 4].to_vec();
        let l = cut.len() as u16;
        cut[2..4].copy_from_slice(&l.to_be_bytes());
        assert!(open(&cut, &[secret()]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn open_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = open(&bytes, &[secret()]);
        }
    }
}
