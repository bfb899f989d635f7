//! Header rules a gateway applies: hop-by-hop fields (RFC 9110 §7.6.1), `Forwarded`
//! (RFC 7239) and `X-Forwarded-For`, idempotency (RFC 9110 §9.2.2), validators for
//! resuming a download (RFC 9110 §8.8, §13.1.5, §14).
//!
//! Pure functions over field names and values, so the PPU can use them with hyper's
//! header map as well as with raw heads.

use std::net::{IpAddr, SocketAddr};

use super::framing::{trim, Head};

/// Fields that are always hop-by-hop (besides those `Connection` names).
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    "trailer",
];

/// Whether a field must not be forwarded to the next hop, given the values of the
/// message's `Connection` fields.
pub fn is_hop_by_hop<'a>(name: &str, connection: impl IntoIterator<Item = &'a [u8]>) -> bool {
    if HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) {
        return true;
    }
    connection
        .into_iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .any(|t| trim(t).eq_ignore_ascii_case(name.as_bytes()))
}

/// The end-to-end fields of a head, in order (hop-by-hop ones removed).
pub fn end_to_end(head: &Head) -> Vec<(String, Vec<u8>)> {
    let conn: Vec<&[u8]> = head.values("connection").collect();
    head.headers
        .iter()
        .filter(|(n, _)| !is_hop_by_hop(n, conn.iter().copied()))
        .cloned()
        .collect()
}

/// Whether a method is idempotent (RFC 9110 §9.2.2).
pub fn idempotent_method(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

/// Whether a request may be sent again after a failure: an idempotent method, or an
/// `Idempotency-Key` field (the backend deduplicates).
pub fn replayable(head: &Head) -> bool {
    head.method().is_some_and(idempotent_method)
        || head.value("idempotency-key").is_some_and(|v| !v.is_empty())
}

/// One `Forwarded` element (RFC 7239): `for=` the client, `proto=`, and `host=` when given.
pub fn forwarded_element(client: SocketAddr, proto: &str, host: Option<&str>) -> String {
    let node = match client.ip() {
        IpAddr::V4(ip) => format!("{ip}:{}", client.port()),
        IpAddr::V6(ip) => format!("[{ip}]:{}", client.port()),
    };
    // Both forms contain ':' and IPv6 '[', which are not token characters: quote.
    let mut out = format!("for=\"{node}\";proto={proto}");
    if let Some(h) = host.filter(|h| h.bytes().all(|b| b.is_ascii_graphic() && b != b'"')) {
        out.push_str(&format!(";host=\"{h}\""));
    }
    out
}

/// The `Forwarded` value after this hop: the previous value (if any), then ours.
pub fn append_forwarded(previous: Option<&[u8]>, element: &str) -> Vec<u8> {
    append_list(previous, element)
}

/// The `X-Forwarded-For` value after this hop: previous addresses, then the client's.
pub fn append_x_forwarded_for(previous: Option<&[u8]>, client: IpAddr) -> Vec<u8> {
    append_list(previous, &client.to_string())
}

fn append_list(previous: Option<&[u8]>, item: &str) -> Vec<u8> {
    let mut out = previous.map(trim).unwrap_or_default().to_vec();
    if !out.is_empty() {
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(item.as_bytes());
    out
}

/// A strong validator of a representation, usable in `If-Range`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Validator {
    /// A strong entity tag, with its quotes.
    ETag(Vec<u8>),
    /// A `Last-Modified` date that is strong (at least a second before `Date`).
    LastModified(Vec<u8>),
}

impl Validator {
    /// The value for `If-Range`.
    pub fn value(&self) -> &[u8] {
        match self {
            Validator::ETag(v) | Validator::LastModified(v) => v,
        }
    }

    /// Whether a response head carries this same validator.
    pub fn matches(&self, head: &Head) -> bool {
        match self {
            Validator::ETag(v) => head.value("etag") == Some(v.as_slice()),
            Validator::LastModified(v) => head.value("last-modified") == Some(v.as_slice()),
        }
    }
}

/// The strong validator of a response, if any (RFC 9110 §13.1.5 rules for `If-Range`):
/// a strong `ETag`; else a `Last-Modified` at least one second before `Date`.
pub fn strong_validator(head: &Head) -> Option<Validator> {
    if let Some(tag) = head.value("etag") {
        let strong = tag.len() >= 2 && tag[0] == b'"' && tag[tag.len() - 1] == b'"';
        let inner_ok = tag.len() >= 2 && !tag[1..tag.len() - 1].contains(&b'"');
        return (strong && inner_ok).then(|| Validator::ETag(tag.to_vec()));
    }
    let lm = head.value("last-modified")?;
    let date = head.value("date")?;
    (http_date(lm)? < http_date(date)?).then(|| Validator::LastModified(lm.to_vec()))
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) into a sortable key.
pub fn http_date(v: &[u8]) -> Option<(u32, u32, u32, u32, u32, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let mut it = s.split(' ');
    let (_wd, day, mon, year, time, gmt) = (
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
    );
    if it.next().is_some() || gmt != "GMT" {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = MONTHS.iter().position(|&x| x == mon)? as u32 + 1;
    let mut t = time.split(':');
    let num = |x: Option<&str>, len: usize| -> Option<u32> {
        let x = x?;
        (x.len() == len && x.bytes().all(|b| b.is_ascii_digit())).then(|| x.parse().ok())?
    };
    let (h, mi, se) = (num(t.next(), 2)?, num(t.next(), 2)?, num(t.next(), 2)?);
    if t.next().is_some() || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some((num(Some(year), 4)?, m, num(Some(day), 2)?, h, mi, se))
}

/// Whether a response allows byte ranges.
pub fn accepts_byte_ranges(head: &Head) -> bool {
    head.has_token("accept-ranges", "bytes")
}

/// Parses `Content-Range: bytes first-last/complete` into `(first, last, complete)`.
pub fn content_range(head: &Head) -> Option<(u64, u64, u64)> {
    let v = std::str::from_utf8(head.value("content-range")?).ok()?;
    let rest = v.strip_prefix("bytes ")?;
    let (range, complete) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let p = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())?
    };
    let (first, last, complete) = (p(first)?, p(last)?, p(complete)?);
    (first <= last && last < complete).then_some((first, last, complete))
}

/// Rewrites a raw request head (without body) to ask for `bytes=from-` if `validator`
/// still holds: drops existing `Range`/`If-Range` fields and adds ours before the end.
pub fn range_request(raw_head: &[u8], from: u64, validator: &Validator) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw_head.len() + 64);
    let mut lines = raw_head.split_inclusive(|&b| b == b'\n').peekable();
    if let Some(first) = lines.next() {
        out.extend_from_slice(first);
    }
    while let Some(line) = lines.next() {
        let bare = line.strip_suffix(b"\n").unwrap_or(line);
        let bare = bare.strip_suffix(b"\r").unwrap_or(bare);
        if bare.is_empty() && lines.peek().is_none() {
            break;
        }
        let name = bare.split(|&b| b == b':').next().unwrap_or_default();
        if name.eq_ignore_ascii_case(b"range") || name.eq_ignore_ascii_case(b"if-range") {
            continue;
        }
        out.extend_from_slice(line);
    }
    out.extend_from_slice(format!("Range: bytes={from}-\r\nIf-Range: ").as_bytes());
    out.extend_from_slice(validator.value());
    out.extend_from_slice(b"\r\n\r\n");
    out
}

/// How the body of a request encoded by [`encode_request_head`] is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked` (the caller writes chunks).
    Chunked,
}

/// The client a request came from, for `Forwarded` and `X-Forwarded-For`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientInfo<'a> {
    /// The client's address.
    pub addr: SocketAddr,
    /// `http` or `https`.
    pub proto: &'a str,
}

/// An HTTP/1.1 request head for the PE, from a request the PPU parsed (hyper, HTTP/1.1
/// or HTTP/2): hop-by-hop fields (and any framing fields) of the client's hop are
/// dropped, `Forwarded` and `X-Forwarded-For` extended with `client`, and the framing
/// of `body` added. Names and values are taken as given (hyper validated them); values
/// with CR or LF are dropped rather than written.
pub fn encode_request_head<'a>(
    method: &str,
    target: &str,
    fields: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    client: Option<ClientInfo<'_>>,
    body: BodyFraming,
) -> Vec<u8> {
    let fields: Vec<(&str, &[u8])> = fields.into_iter().collect();
    let conn: Vec<&[u8]> = fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .map(|(_, v)| *v)
        .collect();
    let mut out = format!("{method} {target} HTTP/1.1\r\n").into_bytes();
    let mut forwarded: Option<Vec<u8>> = None;
    let mut xff: Option<Vec<u8>> = None;
    let mut host = None;
    for (name, value) in &fields {
        let lower = name.to_ascii_lowercase();
        if is_hop_by_hop(name, conn.iter().copied())
            || lower == "content-length"
            || value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
        {
            continue;
        }
        let join = |acc: &mut Option<Vec<u8>>| {
            let v = acc.get_or_insert_with(Vec::new);
            if !v.is_empty() {
                v.extend_from_slice(b", ");
            }
            v.extend_from_slice(trim(value));
        };
        match lower.as_str() {
            "forwarded" if client.is_some() => join(&mut forwarded),
            "x-forwarded-for" if client.is_some() => join(&mut xff),
            _ => {
                if lower == "host" {
                    host = std::str::from_utf8(value).ok();
                }
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    if let Some(c) = client {
        let f = append_forwarded(
            forwarded.as_deref(),
            &forwarded_element(c.addr, c.proto, host),
        );
        out.extend_from_slice(b"Forwarded: ");
        out.extend_from_slice(&f);
        out.extend_from_slice(b"\r\nX-Forwarded-For: ");
        out.extend_from_slice(&append_x_forwarded_for(xff.as_deref(), c.addr.ip()));
        out.extend_from_slice(b"\r\n");
    }
    match body {
        BodyFraming::None => {}
        BodyFraming::Length(n) => {
            out.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes())
        }
        BodyFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A raw head without the fields named `name` (case-insensitive).
pub fn strip_field(raw_head: &[u8], name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw_head.len());
    for (i, line) in raw_head.split_inclusive(|&b| b == b'\n').enumerate() {
        let field = line.split(|&b| b == b':').next().unwrap_or_default();
        if i > 0 && field.eq_ignore_ascii_case(name.as_bytes()) {
            continue;
        }
        out.extend_from_slice(line);
    }
    out
}

/// A complete `text/plain` response with `Connection: keep-alive` semantics left to the
/// client (no `Connection` field), for answers the gateway makes itself.
pub fn plain_response(status: u16, reason: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::super::framing::{Direction, Framer, HttpLimits};
    use super::*;

    fn head(dir: Direction, raw: &[u8]) -> Head {
        let limits = HttpLimits::REQUEST;
        Framer::new(dir, limits)
            .advance(raw)
            .unwrap()
            .head
            .unwrap()
            .0
    }

    #[test]
    fn hop_by_hop_fields_are_removed() {
        let h = head(
            Direction::Request,
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Connection: x\r\nAccept: */*\r\n\r\n",
        );
        let names: Vec<String> = end_to_end(&h).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["Host", "Accept"]);
    }

    #[test]
    fn forwarded_helpers() {
        let v4: SocketAddr = "192.0.2.60:4711".parse().unwrap();
        let v6: SocketAddr = "[2001:db8:cafe::17]:4711".parse().unwrap();
        assert_eq!(
            forwarded_element(v4, "http", None),
            "for=\"192.0.2.60:4711\";proto=http"
        );
        assert_eq!(
            forwarded_element(v6, "https", Some("example.com")),
            "for=\"[2001:db8:cafe::17]:4711\";proto=https;host=\"example.com\""
        );
        assert_eq!(
            append_forwarded(Some(b"for=1.2.3.4 "), "for=x"),
            b"for=1.2.3.4, for=x".to_vec()
        );
        assert_eq!(
            append_x_forwarded_for(None, v4.ip()),
            b"192.0.2.60".to_vec()
        );
        assert_eq!(
            append_x_forwarded_for(Some(b"10.0.0.1"), v6.ip()),
            b"10.0.0.1, 2001:db8:cafe::17".to_vec()
        );
    }

    #[test]
    fn validators_follow_rfc_9110() {
        let r = |fields: &str| {
            head(
                Direction::Response,
                format!("HTTP/1.1 200 OK\r\n{fields}\r\n").as_bytes(),
            )
        };
        assert_eq!(
            strong_validator(&r("ETag: \"abc\"\r\n")),
            Some(Validator::ETag(b"\"abc\"".to_vec()))
        );
        assert_eq!(strong_validator(&r("ETag: W/\"abc\"\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nDate: Sun, 06 Nov 1994 09:49:37 GMT\r\n")), None);
        assert_eq!(
            strong_validator(&r("Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nDate: Sun, 06 Nov 1994 08:49:38 GMT\r\n")),
            Some(Validator::LastModified(b"Sun, 06 Nov 1994 08:49:37 GMT".to_vec()))
        );
        // Modified in the same second as the response: weak.
        assert_eq!(strong_validator(&r("Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n")), None);
        assert_eq!(
            http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"),
            Some((1994, 11, 6, 8, 49, 37))
        );
        assert_eq!(http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert!(accepts_byte_ranges(&r("Accept-Ranges: none, bytes\r\n")));
        assert!(!accepts_byte_ranges(&r("Accept-Ranges: none\r\n")));
        assert_eq!(
            content_range(&r("Content-Range: bytes 10-99/100\r\n")),
            Some((10, 99, 100))
        );
        assert_eq!(
            content_range(&r("Content-Range: bytes 10-100/100\r\n")),
            None
        );
        assert_eq!(content_range(&r("Content-Range: bytes */100\r\n")), None);
    }

    #[test]
    fn range_request_replaces_range_fields() {
        let raw = b"GET /f HTTP/1.1\r\nHost: a\r\nRange: bytes=0-\r\nIF-RANGE: \"x\"\r\nAccept: */*\r\n\r\n";
        let out = range_request(raw, 1234, &Validator::ETag(b"\"v1\"".to_vec()));
        assert_eq!(
            out,
            b"GET /f HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nRange: bytes=1234-\r\nIf-Range: \"v1\"\r\n\r\n".to_vec()
        );
        let h = head(Direction::Request, &out);
        assert_eq!(h.value("range"), Some(&b"bytes=1234-"[..]));
    }

    #[test]
    fn request_head_for_the_pe() {
        let client = ClientInfo {
            addr: "192.0.2.60:4711".parse().unwrap(),
            proto: "https",
        };
        let fields: Vec<(&str, &[u8])> = vec![
            ("host", b"example.com"),
            ("connection", b"keep-alive, x-hop"),
            ("x-hop", b"1"),
            ("te", b"trailers"),
            ("content-length", b"99"),
            ("x-forwarded-for", b"10.0.0.1"),
            ("forwarded", b"for=10.0.0.1"),
            ("x-evil", b"a\r\nInjected: 1"),
            ("accept", b"*/*"),
        ];
        let out = encode_request_head(
            "POST",
            "/o?x=1",
            fields,
            Some(client),
            BodyFraming::Length(5),
        );
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "POST /o?x=1 HTTP/1.1\r\nhost: example.com\r\naccept: */*\r\nForwarded: for=10.0.0.1, for=\"192.0.2.60:4711\";proto=https;host=\"example.com\"\r\nX-Forwarded-For: 10.0.0.1, 192.0.2.60\r\nContent-Length: 5\r\n\r\n"
        );
        // Our own framer reads it back.
        let h = head(Direction::Request, &out);
        assert_eq!(h.content_length(), Ok(Some(5)));
        let plain = encode_request_head("GET", "/", [("a", &b"b"[..])], None, BodyFraming::Chunked);
        assert_eq!(
            plain,
            b"GET / HTTP/1.1\r\na: b\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec()
        );
    }

    #[test]
    fn idempotency() {
        let get = head(Direction::Request, b"GET / HTTP/1.1\r\n\r\n");
        let post = head(Direction::Request, b"POST / HTTP/1.1\r\n\r\n");
        let keyed = head(
            Direction::Request,
            b"POST / HTTP/1.1\r\nIdempotency-Key: \"k1\"\r\n\r\n",
        );
        assert!(replayable(&get));
        assert!(!replayable(&post));
        assert!(replayable(&keyed));
        for m in ["OPTIONS", "TRACE", "PUT", "DELETE", "HEAD"] {
            assert!(idempotent_method(m));
        }
        assert!(!idempotent_method("PATCH"));
    }
}
