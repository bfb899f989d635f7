//! `pg-http-backend` with real clients: curl for Range/If-Range/HEAD/POST, and a raw
//! socket that watches a download die with a SIGKILLed instance and completes it on
//! another instance with `Range` + `If-Range` — what the PPU does at failover.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running backend, killed on drop.
struct Backend {
    child: Child,
    port: u16,
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn backend(extra: &[&str]) -> Backend {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pg-http-backend"))
        .arg("--quiet")
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start pg-http-backend");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let port = first
        .trim()
        .strip_prefix("listening ")
        .expect("banner")
        .parse()
        .unwrap();
    Backend { child, port }
}

/// A fresh scratch directory for curl's output files.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pg-http-backend-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Response of one curl run: status, header fields (lower-case names), body.
struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn curl(dir: &Path, url: &str, args: &[&str]) -> Got {
    let h = dir.join("headers");
    let b = dir.join("body");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-D"])
        .arg(&h)
        .arg("-o")
        .arg(&b)
        .args(args)
        .arg(url)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&h).unwrap();
    let mut lines = text.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Got {
        status,
        headers,
        body: std::fs::read(&b).unwrap_or_default(),
    }
}

#[test]
fn range_and_if_range_with_curl() {
    let b = backend(&[]);
    let dir = scratch("range");
    let url = format!("http://127.0.0.1:{}/file/200000?seed=5", b.port);
    let full = curl(&dir, &url, &[]);
    assert_eq!(full.status, 200);
    assert_eq!(full.body.len(), 200_000);
    assert_eq!(full.header("accept-ranges"), Some("bytes"));
    let etag = full.header("etag").unwrap().to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong ETag: {etag}"
    );
    let lm = full.header("last-modified").unwrap().to_string();
    // Deterministic, and the seed matters.
    assert_eq!(curl(&dir, &url, &[]).body, full.body);
    let other = curl(
        &dir,
        &format!("http://127.0.0.1:{}/file/200000?seed=6", b.port),
        &[],
    );
    assert_ne!(other.body, full.body);

    let ranged = curl(
        &dir,
        &url,
        &["-r", "150000-", "-H", &format!("If-Range: {etag}")],
    );
    assert_eq!(ranged.status, 206);
    assert_eq!(
        ranged.header("content-range"),
        Some("bytes 150000-199999/200000")
    );
    assert_eq!(ranged.body, &full.body[150_000..]);
    let by_date = curl(
        &dir,
        &url,
        &["-r", "7-99", "-H", &format!("If-Range: {lm}")],
    );
    assert_eq!(by_date.status, 206);
    assert_eq!(by_date.body, &full.body[7..100]);
    let suffix = curl(&dir, &url, &["-r", "-10"]);
    assert_eq!(suffix.body, &full.body[199_990..]);

    // A validator that no longer matches: the whole representation, status 200.
    let stale = curl(&dir, &url, &["-r", "150000-", "-H", "If-Range: \"stale\""]);
    assert_eq!(stale.status, 200);
    assert_eq!(stale.body, full.body);
    let unsat = curl(&dir, &url, &["-r", "200000-"]);
    assert_eq!(unsat.status, 416);
    assert_eq!(unsat.header("content-range"), Some("bytes */200000"));
    let head = curl(&dir, &url, &["-I"]);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("200000"));
    assert_eq!(head.header("etag"), Some(etag.as_str()));
    // No body after HEAD: the next response on the connection follows the head directly.
    let mut s = TcpStream::connect(("127.0.0.1", b.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "HEAD /file/200000?seed=5 HTTP/1.1\r\n\r\nGET /who HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    assert!(read_head(&mut s).contains("Content-Length: 200000\r\n"));
    assert!(read_head(&mut s).starts_with("HTTP/1.1 200 OK\r\n"));
    let mut rest = String::new();
    s.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "backend\n");

    // Another generation is another representation: same URL, other validators.
    let b2 = backend(&["--generation", "2"]);
    let url2 = format!("http://127.0.0.1:{}/file/200000?seed=5", b2.port);
    let gen2 = curl(
        &dir,
        &url2,
        &["-r", "150000-", "-H", &format!("If-Range: {etag}")],
    );
    assert_eq!(gen2.status, 200);
    assert_ne!(gen2.header("etag"), Some(etag.as_str()));
    assert_ne!(gen2.body, full.body);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn echo_and_idempotency_key_counter() {
    let b = backend(&[]);
    let dir = scratch("echo");
    let payload: Vec<u8> = (0..70_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let file = dir.join("payload");
    std::fs::write(&file, &payload).unwrap();
    let base = format!("http://127.0.0.1:{}", b.port);
    let echo = curl(
        &dir,
        &format!("{base}/echo"),
        &["--data-binary", &format!("@{}", file.display())],
    );
    assert_eq!(echo.status, 200);
    assert_eq!(echo.body, payload);
    let chunked = curl(
        &dir,
        &format!("{base}/echo"),
        &[
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &format!("@{}", file.display()),
        ],
    );
    assert_eq!(chunked.body, payload);

    let post = |key: Option<&str>| {
        let mut args = vec!["-X", "POST"];
        let h;
        if let Some(k) = key {
            h = format!("Idempotency-Key: {k}");
            args.extend(["-H", h.as_str()]);
        }
        String::from_utf8(curl(&dir, &format!("{base}/count"), &args).body).unwrap()
    };
    assert_eq!(post(None), "count 1\n");
    assert_eq!(post(Some("k1")), "count 2\n");
    assert_eq!(
        post(Some("k1")),
        "count 2\n",
        "a repeated key is not counted again"
    );
    assert_eq!(post(Some("k2")), "count 3\n");
    assert_eq!(post(None), "count 4\n");
    let get = curl(&dir, &format!("{base}/count"), &[]);
    assert_eq!(get.body, b"count 4\n");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads a response head from a raw socket; returns the head text.
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "head cut short");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[test]
fn download_cut_by_sigkill_completes_on_another_instance() {
    let size = 400_000usize;
    let mut a = backend(&["--name", "a"]);
    let b = backend(&["--name", "b"]);
    let path = format!("/slow/{size}?seed=9&rate=400000");
    let mut s = TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("ETag: "))
        .unwrap()
        .to_string();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < 50_000 {
        assert!(Instant::now() < deadline, "trickle too slow");
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
    }
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    // Whatever was in flight arrives, then the connection ends short of the body.
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    assert!(got.len() < size, "the kill must cut the body");
    let dir = scratch("kill");
    let url = format!("http://127.0.0.1:{}{path}", b.port);
    let rest = curl(
        &dir,
        &url.replace("/slow/", "/file/"),
        &[
            "-r",
            &format!("{}-", got.len()),
            "-H",
            &format!("If-Range: {etag}"),
        ],
    );
    assert_eq!(rest.status, 206);
    got.extend_from_slice(&rest.body);
    let whole = curl(&dir, &url.replace("/slow/", "/file/"), &[]);
    assert_eq!(got.len(), size);
    assert!(
        got == whole.body,
        "spliced body differs from the representation"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
