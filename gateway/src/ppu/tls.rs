//! TLS termination for `tls` and `https` listeners (rustls, ring provider, TLS 1.2 and
//! 1.3 with rustls' default suites).
//!
//! The certificate sits behind a [`CertResolver`] whose key pair can be swapped at any
//! time ([`CertResolver::reload`]): new handshakes get the new certificate, established
//! TLS sessions keep theirs, so a reload drops no session.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// ALPN protocols of an `https` listener, preferred first.
pub const ALPN_HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The listener's certificate chain and key, swappable while handshakes run.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
    cert: PathBuf,
    key: PathBuf,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Reads a PEM certificate chain and private key and checks that they belong together.
pub fn load_certified_key(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading certificate file {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing PEM certificates in {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("no certificate in {}", cert.display());
    }
    let der = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading a PEM private key from {}", key.display()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&der)
        .with_context(|| format!("unsupported private key in {}", key.display()))?;
    let ck = CertifiedKey::new(chain, signer);
    ck.keys_match().with_context(|| {
        format!(
            "the key in {} does not belong to the certificate in {}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(ck)
}

impl CertResolver {
    /// Loads the files once; errors name the file and what is wrong with it.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<Self>> {
        let ck = load_certified_key(cert, key)?;
        Ok(Arc::new(CertResolver {
            current: ArcSwap::from_pointee(ck),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        }))
    }

    /// Reads the certificate and key files again and, when they are valid, serves them
    /// to new handshakes. On error the previous pair stays in use.
    pub fn reload(&self) -> anyhow::Result<()> {
        let ck = load_certified_key(&self.cert, &self.key)?;
        self.current.store(Arc::new(ck));
        Ok(())
    }

    /// Serves another pair (a caller that read the files itself).
    pub fn replace(&self, ck: CertifiedKey) {
        self.current.store(Arc::new(ck));
    }

    /// Whether this resolver reads exactly these files.
    pub fn reads(&self, cert: &Path, key: &Path) -> bool {
        self.cert == cert && self.key == key
    }

    /// The leaf certificate served now (DER).
    pub fn leaf(&self) -> Option<CertificateDer<'static>> {
        self.current.load().cert.first().cloned()
    }
}

/// A server configuration using `resolver` and offering `alpn` (empty: no ALPN).
pub fn server_config(
    resolver: Arc<CertResolver>,
    alpn: &[&[u8]],
) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str, cn: &str) -> (PathBuf, PathBuf) {
        let ck = rcgen::generate_simple_self_signed(vec![cn.to_string()]).unwrap();
        let c = dir.join(format!("{name}.crt"));
        let k = dir.join(format!("{name}.key"));
        std::fs::write(&c, ck.cert.pem()).unwrap();
        std::fs::write(&k, ck.key_pair.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn loads_reloads_and_refuses_mismatched_or_missing_files() {
        let dir = std::env::temp_dir().join(format!("pg-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (c1, k1) = write_pair(&dir, "a", "a.test");
        let (c2, k2) = write_pair(&dir, "b", "b.test");
        let r = CertResolver::load(&c1, &k1).unwrap();
        let first = r.leaf().unwrap();
        // A certificate with another's key is refused, naming the files.
        let e = load_certified_key(&c1, &k2).unwrap_err();
        assert!(format!("{e:#}").contains("does not belong"), "{e:#}");
        let e = load_certified_key(&dir.join("nope.crt"), &k1).unwrap_err();
        assert!(format!("{e:#}").contains("nope.crt"), "{e:#}");
        // Reload with the same files keeps serving; new files on disk are picked up.
        std::fs::copy(&c2, &c1).unwrap();
        assert!(
            r.reload().is_err(),
            "new cert with the old key must be refused"
        );
        assert_eq!(
            r.leaf().unwrap(),
            first,
            "a failed reload keeps the old pair"
        );
        std::fs::copy(&k2, &k1).unwrap();
        r.reload().unwrap();
        assert_ne!(r.leaf().unwrap(), first);
        assert!(r.reads(&c1, &k1));
        server_config(r, ALPN_HTTP).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
