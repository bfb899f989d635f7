//! `pg-http-backend`: a killable HTTP/1.1 server for failover tests. Content depends only
//! on the request and `--generation`, never on the instance, so a request replayed on
//! another instance gets the same bytes, and a download can resume there with `Range`.
//! Prints `listening <port>` on stdout once it accepts connections, then
//! `req <method> <target>` for every request (unless `--quiet`).
//!
//! Routes:
//! - `GET|HEAD /file/<size>?seed=N`: deterministic bytes, strong `ETag` and
//!   `Last-Modified` (both change with `--generation`), `Accept-Ranges: bytes`; honours a
//!   single `Range` (`a-b`, `a-`, `-n`) and `If-Range` (206 / 200 / 416).
//! - `GET|HEAD /slow/<size>?seed=N&rate=B`: the same representation, trickled at B
//!   bytes/s (default `--rate`), so a test can kill the server mid-body.
//! - `POST /echo`: the request body back (Content-Length or chunked requests); `Expect:
//!   100-continue` gets `100 Continue` before the body is read.
//! - `GET /count`: the counter; `POST /count`: increments it and answers the new value;
//!   with `Idempotency-Key` a repeated key gets the first answer again (idempotency demo);
//!   `?delay=MS` waits that long before counting (a request in flight when killed).
//! - `GET /who`: the instance name.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser, Clone)]
#[command(about = "An HTTP/1.1 test backend with deterministic, resumable content")]
struct Args {
    /// TCP port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Instance name (answer to /who, `X-Backend` field).
    #[arg(long, default_value = "backend")]
    name: String,
    /// Representation generation: changes content, ETag and Last-Modified.
    #[arg(long, default_value_t = 1)]
    generation: u32,
    /// Default trickle rate of /slow in bytes per second.
    #[arg(long, default_value_t = 1 << 20)]
    rate: u64,
    /// Do not print a line per request.
    #[arg(long)]
    quiet: bool,
}

/// Longest request head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted by /echo.
const MAX_BODY: u64 = 64 << 20;

/// Shared state of all connections.
struct State {
    args: Args,
    counter: Mutex<(u64, HashMap<String, u64>)>,
}

/// One request head.
struct Request {
    method: String,
    target: String,
    minor: u8,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn keep_alive(&self) -> bool {
        let conn = self.header("connection").unwrap_or("").to_ascii_lowercase();
        if self.minor == 0 {
            conn.contains("keep-alive")
        } else {
            !conn.contains("close")
        }
    }
}

/// Bytes `8·block..8·block+8` of the representation `(seed, generation)`.
fn content_block(seed: u64, generation: u32, block: u64) -> [u8; 8] {
    // splitmix64: cheap, and any offset can be computed directly (ranges).
    let mut z = (seed ^ (u64::from(generation) << 40))
        .wrapping_add(block.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).to_le_bytes()
}

/// Fills `buf` with the content from offset `from`.
fn fill(seed: u64, generation: u32, from: u64, buf: &mut [u8]) {
    let mut block = content_block(seed, generation, from / 8);
    for (k, b) in buf.iter_mut().enumerate() {
        let i = from + k as u64;
        if i % 8 == 0 {
            block = content_block(seed, generation, i / 8);
        }
        *b = block[(i % 8) as usize];
    }
}

/// An IMF-fixdate for seconds since the epoch.
fn http_date(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        WD[(days % 7) as usize],
        MON[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn now_date() -> String {
    http_date(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

/// A single byte range of a representation of `size` bytes: `Ok(None)` means serve
/// all (no or unsupported range), `Err(())` unsatisfiable.
fn parse_range(v: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let num = |s: &str| s.trim().parse::<u64>().ok();
    let (first, last) = match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, false) => {
            let n = num(b).ok_or(())?;
            if n == 0 || size == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size - 1)
        }
        (false, true) => (num(a).ok_or(())?, size.saturating_sub(1)),
        (false, false) => {
            let (f, l) = (num(a).ok_or(())?, num(b).ok_or(())?);
            if l < f {
                return Ok(None);
            }
            (f, l.min(size.saturating_sub(1)))
        }
        (true, true) => return Ok(None),
    };
    if first >= size {
        return Err(());
    }
    Ok(Some((first, last)))
}

/// Reads one request head; `None` on EOF or a malformed head.
async fn read_head(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<Request> {
    let mut raw = Vec::new();
    loop {
        let b = r.read_u8().await.ok()?;
        if raw.is_empty() && (b == b'\r' || b == b'\n') {
            continue;
        }
        raw.push(b);
        if raw.len() > MAX_HEAD {
            return None;
        }
        if raw.ends_with(b"\r\n\r\n") || raw.ends_with(b"\n\n") {
            break;
        }
    }
    let text = String::from_utf8(raw).ok()?;
    let mut lines = text.lines();
    let mut first = lines.next()?.split(' ');
    let (method, target, version) = (first.next()?, first.next()?, first.next()?);
    let minor = match version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        _ => return None,
    };
    let mut headers = Vec::new();
    for l in lines {
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':')?;
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    Some(Request {
        method: method.to_string(),
        target: target.to_string(),
        minor,
        headers,
    })
}

/// Reads a request body (Content-Length or chunked), bounded.
async fn read_body(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    req: &Request,
) -> Option<Vec<u8>> {
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if !chunked {
        let n: u64 = req
            .header("content-length")
            .map_or(Some(0), |v| v.parse().ok())?;
        if n > MAX_BODY {
            return None;
        }
        let mut body = vec![0; n as usize];
        r.read_exact(&mut body).await.ok()?;
        return Some(body);
    }
    let mut body = Vec::new();
    loop {
        let line = read_line(r).await?;
        let size = u64::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            // Trailer section up to the empty line.
            while !read_line(r).await?.is_empty() {}
            return Some(body);
        }
        if body.len() as u64 + size > MAX_BODY {
            return None;
        }
        let start = body.len();
        body.resize(start + size as usize, 0);
        r.read_exact(&mut body[start..]).await.ok()?;
        if !read_line(r).await?.is_empty() {
            return None;
        }
    }
}

async fn read_line(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<String> {
    let mut line = Vec::new();
    loop {
        let b = r.read_u8().await.ok()?;
        if b == b'\n' {
            break;
        }
        line.push(b);
        if line.len() > 4096 {
            return None;
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).ok()
}

/// Splits `/path?query` into path segments and a query lookup.
fn split_target(target: &str) -> (Vec<&str>, HashMap<&str, &str>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segs = path.split('/').filter(|s| !s.is_empty()).collect();
    let q = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    (segs, q)
}

/// Writes a complete small response.
async fn simple(
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    st: &State,
    status: &str,
    extra: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nDate: {}\r\nX-Backend: {}\r\nContent-Length: {}\r\n{extra}\r\n",
        now_date(),
        st.args.name,
        body.len()
    );
    w.write_all(head.as_bytes()).await?;
    if !head_only {
        w.write_all(body).await?;
    }
    Ok(())
}

/// Serves `/file` and `/slow`.
async fn serve_file(
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    st: &State,
    req: &Request,
    size: u64,
    seed: u64,
    rate: Option<u64>,
) -> std::io::Result<()> {
    let g = st.args.generation;
    let etag = format!("\"{size}-{seed}-g{g}\"");
    // At least a second before any Date we send: a strong validator (RFC 9110 §8.8.2.2).
    let last_modified = http_date(1_704_067_200 + u64::from(g) * 86_400);
    let validators =
        format!("ETag: {etag}\r\nLast-Modified: {last_modified}\r\nAccept-Ranges: bytes\r\n");
    let mut range = match req.header("range") {
        Some(v) => parse_range(v, size),
        None => Ok(None),
    };
    if let Some(ir) = req.header("if-range") {
        if ir != etag && ir != last_modified {
            range = Ok(None);
        }
    }
    let head_only = req.method == "HEAD";
    let (status, first, last, extra) = match range {
        Err(()) => {
            let extra = format!("Content-Range: bytes */{size}\r\n{validators}");
            return simple(w, st, "416 Range Not Satisfiable", &extra, b"", head_only).await;
        }
        Ok(Some((f, l))) => (
            "206 Partial Content",
            f,
            l + 1,
            format!("Content-Range: bytes {f}-{l}/{size}\r\n"),
        ),
        Ok(None) => ("200 OK", 0, size, String::new()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nDate: {}\r\nX-Backend: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n{extra}{validators}\r\n",
        now_date(),
        st.args.name,
        last - first
    );
    w.write_all(head.as_bytes()).await?;
    if head_only {
        return Ok(());
    }
    // /slow writes a twentieth of the rate every 50 ms.
    let piece = rate.map_or(64 * 1024, |r| (r / 20).clamp(1, 64 * 1024)) as usize;
    let mut buf = vec![0u8; piece];
    let mut at = first;
    while at < last {
        let n = (last - at).min(piece as u64) as usize;
        fill(seed, g, at, &mut buf[..n]);
        w.write_all(&buf[..n]).await?;
        at += n as u64;
        if rate.is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Serves requests on one connection until it closes.
async fn serve(stream: TcpStream, st: Arc<State>) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    while let Some(req) = read_head(&mut r).await {
        if !st.args.quiet {
            println!("req {} {}", req.method, req.target);
        }
        let keep = req.keep_alive();
        let head_only = req.method == "HEAD";
        let (segs, q) = split_target(&req.target);
        let num = |k: &str, d: u64| q.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
        match (req.method.as_str(), segs.as_slice()) {
            ("GET" | "HEAD", ["file", size]) | ("GET" | "HEAD", ["slow", size]) => {
                let Ok(size) = size.parse::<u64>() else {
                    simple(&mut w, &st, "400 Bad Request", "", b"bad size\n", head_only).await?;
                    continue;
                };
                let rate = (segs[0] == "slow").then(|| num("rate", st.args.rate).max(1));
                serve_file(&mut w, &st, &req, size, num("seed", 0), rate).await?;
            }
            ("POST", ["echo"]) => {
                // As nginx and most servers do: `100 Continue` before reading the body,
                // so it reaches the proxies while the body is still on its way.
                if req.minor >= 1
                    && req
                        .header("expect")
                        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
                {
                    w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
                }
                let Some(body) = read_body(&mut r, &req).await else {
                    simple(
                        &mut w,
                        &st,
                        "400 Bad Request",
                        "Connection: close\r\n",
                        b"bad body\n",
                        false,
                    )
                    .await?;
                    return Ok(());
                };
                simple(
                    &mut w,
                    &st,
                    "200 OK",
                    "Content-Type: application/octet-stream\r\n",
                    &body,
                    false,
                )
                .await?;
            }
            ("GET" | "HEAD", ["count"]) => {
                let n = st.counter.lock().map(|c| c.0).unwrap_or(0);
                simple(
                    &mut w,
                    &st,
                    "200 OK",
                    "",
                    format!("count {n}\n").as_bytes(),
                    head_only,
                )
                .await?;
            }
            ("POST", ["count"]) => {
                if read_body(&mut r, &req).await.is_none() {
                    return Ok(());
                }
                let delay = num("delay", 0);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                let n = {
                    let Ok(mut c) = st.counter.lock() else {
                        return Ok(());
                    };
                    let key = req.header("idempotency-key").map(str::to_string);
                    match key.as_ref().and_then(|k| c.1.get(k)).copied() {
                        Some(n) => n,
                        None => {
                            c.0 += 1;
                            let n = c.0;
                            if let Some(k) = key {
                                c.1.insert(k, n);
                            }
                            n
                        }
                    }
                };
                simple(
                    &mut w,
                    &st,
                    "200 OK",
                    "",
                    format!("count {n}\n").as_bytes(),
                    false,
                )
                .await?;
            }
            ("GET" | "HEAD", ["who"]) => {
                let body = format!("{}\n", st.args.name);
                simple(&mut w, &st, "200 OK", "", body.as_bytes(), head_only).await?;
            }
            _ => {
                // Unknown routes: the body (if any) is read so the connection stays usable.
                if read_body(&mut r, &req).await.is_none() {
                    return Ok(());
                }
                simple(&mut w, &st, "404 Not Found", "", b"not found\n", head_only).await?;
            }
        }
        if !keep {
            break;
        }
    }
    w.shutdown().await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let l = TcpListener::bind(("127.0.0.1", args.port)).await?;
    println!("listening {}", l.local_addr()?.port());
    std::io::stdout().flush()?;
    let st = Arc::new(State {
        args,
        counter: Mutex::new((0, HashMap::new())),
    });
    loop {
        let (s, _) = l.accept().await?;
        let st = st.clone();
        tokio::spawn(async move {
            let _ = serve(s, st).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_ranges() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(1_704_067_200), "Mon, 01 Jan 2024 00:00:00 GMT");
        assert_eq!(parse_range("bytes=10-", 100), Ok(Some((10, 99))));
        assert_eq!(parse_range("bytes=10-19", 100), Ok(Some((10, 19))));
        assert_eq!(parse_range("bytes=90-200", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=-5", 100), Ok(Some((95, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
    }

    #[test]
    fn content_is_offset_addressable() {
        let mut whole = vec![0; 100];
        fill(7, 1, 0, &mut whole);
        let mut tail = vec![0; 37];
        fill(7, 1, 63, &mut tail);
        assert_eq!(&whole[63..], &tail[..]);
        let mut other = vec![0; 100];
        fill(7, 2, 0, &mut other);
        assert_ne!(whole, other);
    }
}
