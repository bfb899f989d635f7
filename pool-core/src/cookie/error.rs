//! Typed errors of cookie sealing/opening and of key ring construction.

use thiserror::Error;

/// Why a cookie could not be sealed or opened. Every variant has a stable
/// [`CookieError::kind`] for metrics counters.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CookieError {
    /// The cookie (or the cookie that sealing would produce) exceeds the size cap.
    #[error("cookie of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Actual or resulting length.
        len: usize,
        /// The cap ([`super::MAX_COOKIE_LEN`]).
        max: usize,
    },
    /// Fewer bytes than the header or the declared part lengths need.
    #[error("cookie truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// Structurally invalid (e.g. bytes after the tag).
    #[error("malformed cookie: {0}")]
    Malformed(&'static str),
    /// A format version this build does not know.
    #[error("unsupported cookie version {0}")]
    UnsupportedVersion(u8),
    /// Sealed under a key id the ring does not hold (wrong or retired key).
    #[error("cookie sealed with unknown key id {0}")]
    UnknownKey(u16),
    /// Sealed for another pool.
    #[error("cookie belongs to another pool")]
    ForeignPool,
    /// Authentication failed: the cookie was changed outside its public part.
    #[error("cookie authentication failed")]
    Tampered,
    /// Authentic but past its expiry.
    #[error("cookie expired at {expired_at_ms} ms (now {now_ms} ms)")]
    Expired {
        /// Expiry written at sealing.
        expired_at_ms: u64,
        /// The time passed to `open`.
        now_ms: u64,
    },
}

impl CookieError {
    /// A stable snake_case label for metrics (never changes between versions).
    pub fn kind(&self) -> &'static str {
        match self {
            CookieError::TooLarge { .. } => "too_large",
            CookieError::Truncated { .. } => "truncated",
            CookieError::Malformed(_) => "malformed",
            CookieError::UnsupportedVersion(_) => "unsupported_version",
            CookieError::UnknownKey(_) => "unknown_key",
            CookieError::ForeignPool => "foreign_pool",
            CookieError::Tampered => "tampered",
            CookieError::Expired { .. } => "expired",
        }
    }
}

/// Why a key ring could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyRingError {
    /// No keys given: nothing could seal.
    #[error("key ring needs at least one key")]
    Empty,
    /// A key shorter than [`super::MIN_KEY_LEN`].
    #[error("key {id} is {len} bytes, at least {min} are required")]
    KeyTooShort {
        /// The key's id.
        id: u16,
        /// Its length.
        len: usize,
        /// Required minimum.
        min: usize,
    },
    /// Two keys with the same id: `open` could not tell them apart.
    #[error("duplicate key id {0}")]
    DuplicateId(u16),
}
