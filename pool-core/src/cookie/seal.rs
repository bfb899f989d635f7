//! Sealing and opening: AES-256-GCM for the private part, HMAC-SHA256 over all but the
//! public part (see the module docs of [`crate::cookie`] for the layout).

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Nonce, Tag};
use hmac::{Hmac, Mac};
use rand::CryptoRng;
use sha2::{Digest, Sha256};

use super::format::{parse, CookieView, BINDING_LEN, GCM_TAG_LEN, HEADER_LEN, MAC_LEN, NONCE_LEN};
use super::keyring::DerivedKey;
use super::{CookieError, CookieParts, KeyRing, MAX_COOKIE_LEN, VERSION};
use crate::types::PoolHandle;

/// Domain label at the start of the MAC input and the GCM associated data.
const DOMAIN: &[u8] = b"poolgate/cookie/v1";

/// The 8-byte pool binding hint of a pool handle.
pub(crate) fn binding(pool: &PoolHandle) -> [u8; BINDING_LEN] {
    let digest = Sha256::new()
        .chain_update(b"poolgate/cookie/v1/pool")
        .chain_update(pool.as_bytes())
        .finalize();
    let mut out = [0; BINDING_LEN];
    out.copy_from_slice(&digest[..BINDING_LEN]);
    out
}

/// GCM associated data: domain, authenticated header, full pool handle, immutable part.
fn aad(auth_header: &[u8], auth_lengths: &[u8], pool: &PoolHandle, immutable: &[u8]) -> Vec<u8> {
    let handle = pool.as_bytes();
    let mut aad = Vec::with_capacity(DOMAIN.len() + 37 + 2 + handle.len() + immutable.len());
    aad.extend_from_slice(DOMAIN);
    aad.extend_from_slice(auth_header);
    aad.extend_from_slice(auth_lengths);
    // Pool handles are at most 256 bytes; the length prefix keeps the fields unambiguous.
    aad.extend_from_slice(&(handle.len() as u16).to_be_bytes());
    aad.extend_from_slice(handle);
    aad.extend_from_slice(immutable);
    aad
}

/// HMAC-SHA256 under the MAC subkey over the associated data and the sealed private part.
fn mac(key: &DerivedKey, aad: &[u8], sealed_private: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key.mac_key).expect("any key length");
    mac.update(aad);
    mac.update(sealed_private);
    mac
}

impl KeyRing {
    /// Seals `parts` for `pool` under the newest key, valid while `now_ms < expires_at_ms`.
    ///
    /// The nonce comes from `rng`, which must be a CSPRNG (see the module docs).
    pub fn seal<R: CryptoRng + ?Sized>(
        &self,
        pool: &PoolHandle,
        parts: &CookieParts,
        expires_at_ms: u64,
        rng: &mut R,
    ) -> Result<Vec<u8>, CookieError> {
        let len = HEADER_LEN
            .saturating_add(parts.public.len())
            .saturating_add(parts.immutable.len())
            .saturating_add(parts.private.len())
            .saturating_add(GCM_TAG_LEN + MAC_LEN);
        if len > MAX_COOKIE_LEN {
            return Err(CookieError::TooLarge {
                len,
                max: MAX_COOKIE_LEN,
            });
        }
        let key = self.sealing();
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);

        let mut out = Vec::with_capacity(len);
        out.push(VERSION);
        out.extend_from_slice(&key.id.to_be_bytes());
        out.extend_from_slice(&binding(pool));
        out.extend_from_slice(&expires_at_ms.to_be_bytes());
        out.extend_from_slice(&nonce);
        // All three lengths fit in u16: their sum is below MAX_COOKIE_LEN.
        out.extend_from_slice(&(parts.public.len() as u16).to_be_bytes());
        out.extend_from_slice(&(parts.immutable.len() as u16).to_be_bytes());
        out.extend_from_slice(&(parts.private.len() as u16).to_be_bytes());
        debug_assert_eq!(out.len(), HEADER_LEN);

        let aad = aad(&out[..31], &out[33..HEADER_LEN], pool, &parts.immutable);
        out.extend_from_slice(&parts.public);
        out.extend_from_slice(&parts.immutable);
        let priv_start = out.len();
        out.extend_from_slice(&parts.private);
        let tag = key
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut out[priv_start..])
            .map_err(|_| CookieError::TooLarge {
                len,
                max: MAX_COOKIE_LEN,
            })?;
        out.extend_from_slice(&tag);
        let tag = mac(key, &aad, &out[priv_start..]).finalize().into_bytes();
        out.extend_from_slice(&tag);
        debug_assert_eq!(out.len(), len);
        Ok(out)
    }

    /// Opens a cookie for `pool` at time `now_ms`: checks structure, key id, pool,
    /// authenticity and expiry, in that order, and decrypts the private part.
    pub fn open(
        &self,
        pool: &PoolHandle,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<CookieParts, CookieError> {
        let view: CookieView<'_> = parse(bytes)?;
        let key = self
            .find(view.key_id)
            .ok_or(CookieError::UnknownKey(view.key_id))?;
        // The hint is compared before the MAC (see module docs); a forged hint can only
        // change which rejection is reported.
        if view.binding != binding(pool) {
            return Err(CookieError::ForeignPool);
        }
        let aad = aad(
            view.auth_header(),
            view.auth_lengths(),
            pool,
            view.immutable,
        );
        mac(key, &aad, view.sealed_private)
            .verify_slice(view.mac)
            .map_err(|_| CookieError::Tampered)?;
        if now_ms >= view.expires_at_ms {
            return Err(CookieError::Expired {
                expired_at_ms: view.expires_at_ms,
                now_ms,
            });
        }
        let split = view.sealed_private.len() - GCM_TAG_LEN;
        let mut private = view.sealed_private[..split].to_vec();
        let tag = Tag::from_slice(&view.sealed_private[split..]);
        // Unreachable with a valid MAC unless the key ring is inconsistent; still a rejection.
        key.cipher
            .decrypt_in_place_detached(Nonce::from_slice(&view.nonce), &aad, &mut private, tag)
            .map_err(|_| CookieError::Tampered)?;
        Ok(CookieParts {
            public: view.public.to_vec(),
            immutable: view.immutable.to_vec(),
            private,
        })
    }
}
