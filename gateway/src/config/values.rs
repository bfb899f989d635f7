//! Value types of the configuration: durations, addresses, secrets.
//!
//! Each parses from the human form an operator writes ("250ms", "[::1]:9899") and
//! says in its error what form it expected.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Parse a human duration: one or more `<number><unit>` groups, units `ns`, `us`,
/// `ms`, `s`, `m`, `h`, `d`; e.g. `1s`, `250ms`, `1m30s`, `1.5s`. A bare `0` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = || format!("`{text}` is not a duration (write e.g. \"1s\", \"250ms\", \"1m30s\")");
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() || t.len() > 64 {
        return Err(bad());
    }
    let mut total: u128 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("`{text}`: a number needs a unit (ns, us, ms, s, m, h, d)"))?;
        let (num, tail) = rest.split_at(num_end);
        let unit_end = tail
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let nanos_per: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            _ => return Err(bad()),
        };
        if num.is_empty() {
            return Err(bad());
        }
        let (int, frac) = match num.split_once('.') {
            Some((i, f)) if !(f.contains('.') || (i.is_empty() && f.is_empty())) => (i, f),
            Some(_) => return Err(bad()),
            None => (num, ""),
        };
        let int: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| bad())?
        };
        let mut part = int.checked_mul(nanos_per).ok_or_else(bad)?;
        // Fractions: at most 9 digits matter (nanoseconds); more would overflow nothing
        // but add nothing either.
        let frac = &frac[..frac.len().min(9)];
        if !frac.is_empty() {
            let digits: u128 = frac.parse().map_err(|_| bad())?;
            let scale = 10u128.pow(frac.len() as u32);
            part += digits * nanos_per / scale;
        }
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = tail;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| bad())?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Format a duration the way [`parse_duration`] reads it, in the largest exact unit.
pub fn format_duration(d: Duration) -> String {
    let n = d.as_nanos();
    for (unit, per) in [
        ("h", 3_600_000_000_000u128),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
    ] {
        if n != 0 && n % per == 0 {
            return format!("{}{unit}", n / per);
        }
    }
    if n == 0 {
        "0s".to_string()
    } else {
        format!("{n}ns")
    }
}

/// serde `deserialize_with` for [`Duration`] fields written as human strings.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// Parse `ip:port` (IPv6 in brackets).
pub fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        format!("`{text}` is not an IP address and port (write e.g. \"127.0.0.1:9899\" or \"[::1]:9899\")")
    })
}

/// serde `deserialize_with` for one [`SocketAddr`].
pub fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    parse_socket_addr(&s).map_err(serde::de::Error::custom)
}

/// An `ip:port` written as a string in the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Addr(pub SocketAddr);

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        socket_addr(d).map(Addr)
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A `host:port` where the host may be a name (resolved when connecting) or an IP.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port number.
    pub port: u16,
}

impl HostPort {
    /// Parse `host:port`, `1.2.3.4:port` or `[v6]:port`.
    pub fn parse(text: &str) -> Result<HostPort, String> {
        let bad = |why: &str| {
            format!("`{text}` is not host:port ({why}; write e.g. \"backend.example:8080\" or \"[::1]:8080\")")
        };
        let t = text.trim();
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            let (h, p) = rest
                .split_once("]:")
                .ok_or_else(|| bad("bracketed IPv6 needs ]:port"))?;
            h.parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad("bad IPv6 address"))?;
            (h, p)
        } else {
            t.rsplit_once(':').ok_or_else(|| bad("no port"))?
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        if !t.starts_with('[') && host.contains(':') {
            return Err(bad("IPv6 addresses need brackets"));
        }
        if !t.starts_with('[')
            && !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
        {
            return Err(bad("bad host name"));
        }
        let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
        if port == 0 {
            return Err(bad("port 0"));
        }
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HostPort::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Secret bytes (registration secrets, pool keys). `Debug` never shows them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wrap secret bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no secret is loaded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Best effort: do not leave key material in freed memory.
        for b in self.0.iter_mut() {
            // SAFETY: `b` is a valid, aligned, exclusive reference into our own buffer;
            // the volatile write only keeps the compiler from eliding the wipe.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 3d "), Ok(Duration::from_secs(3 * 86400)));
        for bad in [
            "",
            "1",
            "s",
            "1x",
            "-1s",
            "1.2.3s",
            "ms",
            "1s2",
            "99999999999999999999999d",
            "1 s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn addresses_parse() {
        assert_eq!(parse_socket_addr("127.0.0.1:9899").unwrap().port(), 9899);
        assert!(parse_socket_addr("[::1]:1").is_ok());
        assert!(parse_socket_addr("localhost:1").is_err());
        assert!(parse_socket_addr("1.2.3.4").is_err());
        let hp = HostPort::parse("backend.example:8080").unwrap();
        assert_eq!((hp.host.as_str(), hp.port), ("backend.example", 8080));
        assert_eq!(HostPort::parse("[::1]:80").unwrap().to_string(), "[::1]:80");
        for bad in [
            "x", ":80", "h:0", "h:99999", "::1:80", "[zz]:80", "a b:1", "h:",
        ] {
            assert!(HostPort::parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new(b"hunter2hunter2".to_vec());
        assert!(!format!("{s:?}").contains("hunter"));
        assert_eq!(s.len(), 14);
    }

    proptest! {
        #[test]
        fn duration_format_roundtrips(nanos in 0u64..10_000_000_000_000) {
            let d = Duration::from_nanos(nanos);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn duration_parser_is_total(s in ".{0,40}") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn hostport_parser_is_total(s in ".{0,40}") {
            if let Ok(hp) = HostPort::parse(&s) {
                prop_assert_eq!(HostPort::parse(&hp.to_string()), Ok(hp));
            }
        }
    }
}
