//! HTTP test clients (hyper, HTTP/1.1 and HTTP/2, plain or TLS) and the content they
//! must receive from `pg-http-backend`.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Bytes `from..from+len` of `pg-http-backend`'s `/file/<size>?seed=N` content
/// (generation 1), computed here independently of the server.
pub fn expected_content(seed: u64, from: u64, len: usize) -> Vec<u8> {
    let block = |b: u64| -> [u8; 8] {
        let mut z = (seed ^ (1u64 << 40)).wrapping_add(b.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)).to_le_bytes()
    };
    (from..from + len as u64)
        .map(|i| block(i / 8)[(i % 8) as usize])
        .collect()
}

/// SHA-256 of the whole `/file/<size>?seed=N` content, computed in 1 MiB pieces.
pub fn expected_sha256(seed: u64, size: u64) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut at = 0;
    while at < size {
        let n = (size - at).min(1 << 20) as usize;
        h.update(expected_content(seed, at, n));
        at += n as u64;
    }
    h.finalize().into()
}

/// `curl` set up to download into `out`: silent but for errors, failing on an HTTP
/// error status, and with `--max-time 60`, so that a stalled transfer fails the test
/// instead of hanging the suite. Its standard output is piped (for `--write-out`).
pub fn curl_download(out: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new("curl");
    c.args(["--silent", "--show-error", "--fail", "--max-time", "60"])
        .arg("--output")
        .arg(out)
        .stdout(std::process::Stdio::piped());
    c
}

/// A self-signed certificate for `localhost` with this common name and serial, written
/// as PEM files (key mode 600) in `dir`; returns the files and the certificate's DER.
pub fn make_cert(
    dir: &std::path::Path,
    name: &str,
    serial: u64,
) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    use std::os::unix::fs::PermissionsExt;
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("certificate params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.serial_number = Some(rcgen::SerialNumber::from(serial));
    let key = rcgen::KeyPair::generate().expect("generate a key");
    let cert = params.self_signed(&key).expect("self-sign");
    let c = dir.join(format!("{name}.crt"));
    let k = dir.join(format!("{name}.key"));
    super::config::write_file(&c, &cert.pem());
    super::config::write_file(&k, &key.serialize_pem());
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    (c, k, cert.der().to_vec())
}

/// A TLS client trusting exactly `ca_der`, offering `alpn`.
pub fn tls_connector(ca_der: &[u8], alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca_der.to_vec()))
        .expect("trust the test certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// A request body for the test clients.
pub type Body = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|e| match e {}).boxed()
}

/// A body of these bytes.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

/// A hyper client connection (HTTP/1.1, or HTTP/2 when `h2`).
pub enum Conn {
    /// HTTP/1.1.
    H1(hyper::client::conn::http1::SendRequest<Body>),
    /// HTTP/2.
    H2(hyper::client::conn::http2::SendRequest<Body>),
}

impl Conn {
    /// Connects to the PPU on `port`, over TLS when `tls` is given (the certificate the
    /// server showed is returned too).
    pub async fn open(
        port: u16,
        h2: bool,
        tls: Option<&tokio_rustls::TlsConnector>,
    ) -> std::io::Result<(Conn, Option<Vec<u8>>)> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        tcp.set_nodelay(true)?;
        match tls {
            None => Ok((Self::handshake(TokioIo::new(tcp), h2).await?, None)),
            Some(c) => {
                let name = rustls::pki_types::ServerName::try_from("localhost")
                    .expect("a valid server name");
                let s = c.connect(name, tcp).await?;
                let leaf = s
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.to_vec());
                let alpn_h2 = s.get_ref().1.alpn_protocol() == Some(b"h2");
                assert_eq!(alpn_h2, h2, "ALPN did not agree on the protocol asked for");
                Ok((Self::handshake(TokioIo::new(s), h2).await?, leaf))
            }
        }
    }

    async fn handshake<I>(io: I, h2: bool) -> std::io::Result<Conn>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let err = |e: hyper::Error| std::io::Error::other(e);
        if h2 {
            let (s, c) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(err)?;
            tokio::spawn(c);
            Ok(Conn::H2(s))
        } else {
            let (s, c) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(err)?;
            tokio::spawn(c);
            Ok(Conn::H1(s))
        }
    }

    /// Sends a request (absolute `http://localhost/...` URIs are made for HTTP/2).
    pub async fn send(&mut self, mut req: Request<Body>) -> hyper::Result<Response<Incoming>> {
        match self {
            Conn::H1(s) => {
                req.headers_mut()
                    .entry(hyper::header::HOST)
                    .or_insert(hyper::header::HeaderValue::from_static("localhost"));
                s.ready().await?;
                s.send_request(req).await
            }
            Conn::H2(s) => {
                let pq = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/".into());
                *req.uri_mut() = format!("https://localhost{pq}")
                    .parse()
                    .expect("a valid URI");
                *req.version_mut() = hyper::Version::HTTP_2;
                s.ready().await?;
                s.send_request(req).await
            }
        }
    }

    /// GET `path`: status and the whole body.
    pub async fn get(&mut self, path: &str) -> hyper::Result<(u16, Bytes)> {
        let req = Request::get(path)
            .body(empty())
            .expect("a valid GET request");
        let r = self.send(req).await?;
        let status = r.status().as_u16();
        let body = r.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}
