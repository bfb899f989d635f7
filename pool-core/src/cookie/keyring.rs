//! Pool keys: the newest seals, every configured key opens.

use aes_gcm::aead::KeyInit;
use aes_gcm::Aes256Gcm;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::KeyRingError;

/// Identifies a pool key inside a cookie, so key rotation needs no trial decryption.
pub type KeyId = u16;

/// Shortest accepted pool key: 256 bits of secret.
pub const MIN_KEY_LEN: usize = 32;

/// HKDF salt: binds derived keys to this use and format.
const HKDF_SALT: &[u8] = b"poolgate/cookie/v1";

/// Subkeys derived from one pool key.
pub(crate) struct DerivedKey {
    pub(crate) id: KeyId,
    pub(crate) mac_key: [u8; 32],
    pub(crate) cipher: Aes256Gcm,
}

/// The pool keys a PE holds. Built once, validated, then shared read-only.
pub struct KeyRing {
    /// Oldest first; the last one seals.
    pub(crate) keys: Vec<DerivedKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        let ids: Vec<KeyId> = self.keys.iter().map(|k| k.id).collect();
        f.debug_struct("KeyRing").field("key_ids", &ids).finish()
    }
}

fn hmac256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// HKDF-SHA256 (RFC 5869) with a 32-byte output: extract, then one expand block.
fn hkdf32(ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let prk = hmac256(HKDF_SALT, &[ikm]);
    hmac256(&prk, &[info, &[1]])
}

impl KeyRing {
    /// A ring from `(id, key)` pairs, oldest first: the last key seals, all keys open.
    pub fn new<K: AsRef<[u8]>>(
        keys: impl IntoIterator<Item = (KeyId, K)>,
    ) -> Result<Self, KeyRingError> {
        let mut out: Vec<DerivedKey> = Vec::new();
        for (id, key) in keys {
            let key = key.as_ref();
            if key.len() < MIN_KEY_LEN {
                return Err(KeyRingError::KeyTooShort {
                    id,
                    len: key.len(),
                    min: MIN_KEY_LEN,
                });
            }
            if out.iter().any(|k| k.id == id) {
                return Err(KeyRingError::DuplicateId(id));
            }
            let enc = hkdf32(key, b"enc");
            out.push(DerivedKey {
                id,
                mac_key: hkdf32(key, b"mac"),
                cipher: Aes256Gcm::new(&enc.into()),
            });
        }
        if out.is_empty() {
            return Err(KeyRingError::Empty);
        }
        Ok(Self { keys: out })
    }

    /// Id of the key that seals new cookies.
    pub fn sealing_key_id(&self) -> KeyId {
        self.sealing().id
    }

    /// Ids of all keys that open cookies, oldest first.
    pub fn key_ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys.iter().map(|k| k.id)
    }

    pub(crate) fn sealing(&self) -> &DerivedKey {
        // `new` refuses an empty ring.
        self.keys.last().expect("key ring is never empty")
    }

    pub(crate) fn find(&self, id: KeyId) -> Option<&DerivedKey> {
        self.keys.iter().find(|k| k.id == id)
    }
}
