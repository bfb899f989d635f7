//! Three-part state cookies (RFC 5351 §4.4 / RFC 5352 §3.5 "Cookie"), sealed per pool.
//!
//! A PE hands its PU a cookie at checkpoints; on failover the PU gives the latest cookie
//! to the next PE, which opens it to restore the session. The cookie has three parts:
//!
//! - **public**: clear and *not* authenticated. The PU may read and rewrite it with
//!   [`read_public`] / [`replace_public`] without any key (state it derives from the
//!   traffic itself, e.g. requests answered), so no checkpoint has to travel for it.
//! - **immutable**: clear, readable by anyone ([`read_immutable`]), authenticated.
//! - **private**: AES-256-GCM encrypted under the pool key, readable by PEs only.
//!
//! # Wire format (version 1, all integers big-endian)
//!
//! ```text
//! off len  field
//!   0   1  version (= 1)
//!   1   2  key id (which pool key sealed it)
//!   3   8  pool binding: SHA-256("poolgate/cookie/v1/pool" || handle)[..8]
//!  11   8  expires_at_ms (absolute, in the caller's clock)
//!  19  12  GCM nonce (96 random bits)
//!  31   2  public length P          (not authenticated)
//!  33   2  immutable length I
//!  35   2  private plaintext length C
//!  37   P  public part             (not authenticated)
//!   .   I  immutable part
//!   .  C+16 private part: AES-256-GCM ciphertext || GCM tag
//!   .  32  HMAC-SHA256 tag
//! ```
//!
//! # Cryptography
//!
//! Each pool key (>= [`MIN_KEY_LEN`] bytes) is expanded with HKDF-SHA256 (extract with a
//! fixed salt, one expand block per label) into an encryption key and a MAC key, so the two
//! primitives never share key material. The private part is encrypted with AES-256-GCM; its
//! associated data is the header (without the public length), the full pool handle and the
//! immutable part. The outer HMAC-SHA256 tag then covers everything except the public part
//! and its length: the header fields, the full pool handle (not only the 8-byte binding),
//! the immutable part and the sealed private part (encrypt-then-MAC). `open` checks the
//! HMAC in constant time before it decrypts.
//!
//! The 8-byte binding is a *hint* checked before the MAC so that a cookie of another pool
//! is reported as [`CookieError::ForeignPool`] rather than as tampering; the real binding
//! is cryptographic, since the MAC covers the full handle.
//!
//! **Nonces** are 96 random bits drawn from the injected CSPRNG for every seal (the
//! PEs of a pool share keys and no state, so a counter would need coordination). With
//! N seals under one key a repeat has probability about N²/2⁹⁷; rotate the pool key
//! well before 2³² seals (NIST SP 800-38D). Even a repeated nonce would not break
//! integrity, because the HMAC is independent of GCM.
//!
//! # Size
//!
//! A cookie travels in an ASAP Cookie parameter whose 16-bit length includes its 4-byte
//! header, so a cookie is at most [`MAX_COOKIE_LEN`] = 65 531 bytes.

mod error;
mod format;
mod keyring;
mod seal;

pub use error::{CookieError, KeyRingError};
pub use format::{parse, read_immutable, read_public, replace_public, CookieView};
pub use keyring::{KeyId, KeyRing, MIN_KEY_LEN};

/// Cookie format version written by [`KeyRing::seal`].
pub const VERSION: u8 = 1;

/// Largest cookie in bytes: it must fit an ASAP Cookie parameter (16-bit TLV length incl.
/// 4-byte header).
pub const MAX_COOKIE_LEN: usize = 65_535 - 4;

/// Bytes a cookie adds around its three parts (header, GCM tag and HMAC tag).
pub const OVERHEAD: usize = format::HEADER_LEN + format::GCM_TAG_LEN + format::MAC_LEN;

/// The three parts of a session's state, in clear (before sealing / after opening).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CookieParts {
    /// Clear, unauthenticated: the PU may read and change it.
    pub public: Vec<u8>,
    /// Clear, authenticated: the PU may read but not change it.
    pub immutable: Vec<u8>,
    /// Encrypted and authenticated: only PEs holding the pool key can read it.
    pub private: Vec<u8>,
}
