//! Byte layout of a sealed cookie: parsing without keys, and the PU's public-part edits.

use super::{CookieError, KeyId, MAX_COOKIE_LEN, VERSION};

/// Fixed header length (through the three part lengths).
pub(crate) const HEADER_LEN: usize = 37;
/// AES-GCM tag length appended to the private ciphertext.
pub(crate) const GCM_TAG_LEN: usize = 16;
/// HMAC-SHA256 tag length at the end.
pub(crate) const MAC_LEN: usize = 32;
/// GCM nonce length.
pub(crate) const NONCE_LEN: usize = 12;
/// Pool binding hint length.
pub(crate) const BINDING_LEN: usize = 8;

/// Offset of the public length (the header up to here is authenticated).
pub(crate) const PUB_LEN_OFF: usize = 31;
/// Offset of the immutable length (authenticated from here to the end of the header).
pub(crate) const IMM_LEN_OFF: usize = 33;

/// A structurally valid cookie, borrowed; nothing in it is verified yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieView<'a> {
    /// Format version.
    pub version: u8,
    /// Id of the key that sealed it.
    pub key_id: KeyId,
    /// Pool binding hint.
    pub binding: [u8; BINDING_LEN],
    /// Absolute expiry in the caller's millisecond clock.
    pub expires_at_ms: u64,
    /// GCM nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Public part (clear, unauthenticated).
    pub public: &'a [u8],
    /// Immutable part (clear, authenticated but not verified by parsing).
    pub immutable: &'a [u8],
    /// Private ciphertext followed by the GCM tag.
    pub sealed_private: &'a [u8],
    /// HMAC-SHA256 tag.
    pub mac: &'a [u8],
    /// The whole cookie.
    pub(crate) bytes: &'a [u8],
}

fn be16(b: &[u8], off: usize) -> usize {
    usize::from(u16::from_be_bytes([b[off], b[off + 1]]))
}

/// Parses a cookie's structure (no key needed, nothing verified).
pub fn parse(bytes: &[u8]) -> Result<CookieView<'_>, CookieError> {
    if bytes.len() > MAX_COOKIE_LEN {
        return Err(CookieError::TooLarge {
            len: bytes.len(),
            max: MAX_COOKIE_LEN,
        });
    }
    let Some(&version) = bytes.first() else {
        return Err(CookieError::Truncated {
            need: HEADER_LEN,
            have: 0,
        });
    };
    // Checked before the header length so a future format with another header size is
    // reported as a version problem, not as truncation.
    if version != VERSION {
        return Err(CookieError::UnsupportedVersion(version));
    }
    if bytes.len() < HEADER_LEN {
        return Err(CookieError::Truncated {
            need: HEADER_LEN,
            have: bytes.len(),
        });
    }
    let p = be16(bytes, PUB_LEN_OFF);
    let i = be16(bytes, IMM_LEN_OFF);
    let c = be16(bytes, 35);
    let need = HEADER_LEN + p + i + c + GCM_TAG_LEN + MAC_LEN;
    if bytes.len() < need {
        return Err(CookieError::Truncated {
            need,
            have: bytes.len(),
        });
    }
    if bytes.len() > need {
        return Err(CookieError::Malformed("bytes after the authentication tag"));
    }
    let mut binding = [0; BINDING_LEN];
    binding.copy_from_slice(&bytes[3..11]);
    let mut exp = [0; 8];
    exp.copy_from_slice(&bytes[11..19]);
    let mut nonce = [0; NONCE_LEN];
    nonce.copy_from_slice(&bytes[19..31]);
    let pub_end = HEADER_LEN + p;
    let imm_end = pub_end + i;
    let priv_end = imm_end + c + GCM_TAG_LEN;
    Ok(CookieView {
        version,
        key_id: u16::from_be_bytes([bytes[1], bytes[2]]),
        binding,
        expires_at_ms: u64::from_be_bytes(exp),
        nonce,
        public: &bytes[HEADER_LEN..pub_end],
        immutable: &bytes[pub_end..imm_end],
        sealed_private: &bytes[imm_end..priv_end],
        mac: &bytes[priv_end..],
        bytes,
    })
}

/// The public part, readable by the PU without keys.
pub fn read_public(bytes: &[u8]) -> Result<&[u8], CookieError> {
    Ok(parse(bytes)?.public)
}

/// The immutable part, readable without keys (only `open` verifies it).
pub fn read_immutable(bytes: &[u8]) -> Result<&[u8], CookieError> {
    Ok(parse(bytes)?.immutable)
}

/// A copy of the cookie with its public part replaced; the seal stays valid because the
/// public part and its length are outside the authentication.
pub fn replace_public(bytes: &[u8], new_public: &[u8]) -> Result<Vec<u8>, CookieError> {
    let view = parse(bytes)?;
    let len = bytes.len() - view.public.len() + new_public.len();
    if len > MAX_COOKIE_LEN {
        return Err(CookieError::TooLarge {
            len,
            max: MAX_COOKIE_LEN,
        });
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&bytes[..PUB_LEN_OFF]);
    // Fits: len <= MAX_COOKIE_LEN < 65536.
    out.extend_from_slice(&(new_public.len() as u16).to_be_bytes());
    out.extend_from_slice(&bytes[IMM_LEN_OFF..HEADER_LEN]);
    out.extend_from_slice(new_public);
    out.extend_from_slice(&bytes[HEADER_LEN + view.public.len()..]);
    debug_assert_eq!(out.len(), len);
    Ok(out)
}

impl CookieView<'_> {
    /// Authenticated header bytes: everything before the public length.
    pub(crate) fn auth_header(&self) -> &[u8] {
        &self.bytes[..PUB_LEN_OFF]
    }

    /// Authenticated part lengths (immutable and private).
    pub(crate) fn auth_lengths(&self) -> &[u8] {
        &self.bytes[IMM_LEN_OFF..HEADER_LEN]
    }
}
