//! Stateless state cookies (RFC 9260 §5.1.3): everything needed to build an association
//! travels in the INIT ACK and comes back in COOKIE ECHO, authenticated with
//! HMAC-SHA256 under a rotatable secret, so an INIT flood creates no state.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 2;
const MAC_LEN: usize = 32;
/// Most peer addresses carried in a cookie; more are ignored.
pub const MAX_COOKIE_ADDRS: usize = 8;
const FIXED_LEN: usize = 2 + 8 + 4 * 7 + 2 * 4 + 19 + 1 + 1;

/// The association parameters sealed in a cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieData {
    /// Milliseconds since the endpoint's epoch when the cookie was made.
    pub created_ms: u64,
    /// Our verification tag.
    pub local_tag: u32,
    /// Our initial TSN.
    pub local_tsn: u32,
    /// The peer's verification tag.
    pub peer_tag: u32,
    /// The peer's initial TSN.
    pub peer_tsn: u32,
    /// The peer's advertised receive window.
    pub peer_rwnd: u32,
    /// Outbound streams the peer asked for.
    pub peer_os: u16,
    /// Inbound streams the peer accepts.
    pub peer_mis: u16,
    /// Our tag at the time, for restart detection (0 if none).
    pub tie_local: u32,
    /// The peer's tag at the time, for restart detection (0 if none).
    pub tie_peer: u32,
    /// Our SCTP port.
    pub local_port: u16,
    /// The peer's SCTP port.
    pub peer_port: u16,
    /// Where the INIT came from (address and UDP port).
    pub origin: SocketAddr,
    /// Further addresses the peer listed in its INIT.
    pub peer_addrs: Vec<IpAddr>,
    /// The peer offered partial reliability (FORWARD-TSN).
    pub peer_pr: bool,
    /// The peer offered stream reconfiguration (RE-CONFIG in Supported Extensions).
    pub peer_reconfig: bool,
}

/// Why a cookie was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    /// Wrong length, version, key or MAC.
    #[error("invalid cookie")]
    Invalid,
    /// Authentic but older than the lifetime; carries how many ms too old.
    #[error("stale cookie ({0} ms past its lifetime)")]
    Stale(u64),
}

/// The secrets that seal cookies: the newest seals, the newest two open.
pub struct CookieSecret {
    keys: Vec<(u8, [u8; 32])>,
}

impl std::fmt::Debug for CookieSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieSecret")
            .field("keys", &self.keys.len())
            .finish()
    }
}

fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            out.push(4);
            out.extend_from_slice(&a.to_ipv6_mapped().octets());
        }
        IpAddr::V6(a) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
    }
}

fn get_ip(b: &[u8]) -> Option<IpAddr> {
    let o: [u8; 16] = b[1..17].try_into().ok()?;
    match b[0] {
        4 => Ipv6Addr::from(o).to_ipv4_mapped().map(IpAddr::V4),
        6 => Some(IpAddr::V6(Ipv6Addr::from(o))),
        _ => None,
    }
}

impl CookieSecret {
    /// A secret with one key.
    pub fn new(key: [u8; 32]) -> Self {
        CookieSecret {
            keys: vec![(0, key)],
        }
    }

    /// Makes `key` the sealing key; the previous one still opens cookies.
    pub fn rotate(&mut self, key: [u8; 32]) {
        let id = self.keys[0].0.wrapping_add(1);
        self.keys.insert(0, (id, key));
        self.keys.truncate(2);
    }

    fn mac(key: &[u8; 32], body: &[u8]) -> HmacSha256 {
        let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        m.update(body);
        m
    }

    /// Seals cookie data into opaque bytes.
    pub fn seal(&self, d: &CookieData) -> Bytes {
        let (id, key) = &self.keys[0];
        let addrs = &d.peer_addrs[..d.peer_addrs.len().min(MAX_COOKIE_ADDRS)];
        let mut out = Vec::with_capacity(FIXED_LEN + 17 * addrs.len() + MAC_LEN);
        out.push(VERSION);
        out.push(*id);
        out.extend_from_slice(&d.created_ms.to_be_bytes());
        for v in [
            d.local_tag,
            d.local_tsn,
            d.peer_tag,
            d.peer_tsn,
            d.peer_rwnd,
            d.tie_local,
            d.tie_peer,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        for v in [d.peer_os, d.peer_mis, d.local_port, d.peer_port] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        put_ip(&mut out, d.origin.ip());
        out.extend_from_slice(&d.origin.port().to_be_bytes());
        // Flags byte: bit 0 partial reliability, bit 1 stream reconfiguration.
        out.push(u8::from(d.peer_pr) | u8::from(d.peer_reconfig) << 1);
        out.push(addrs.len() as u8);
        for a in addrs {
            put_ip(&mut out, *a);
        }
        let tag = Self::mac(key, &out).finalize().into_bytes();
        out.extend_from_slice(&tag);
        Bytes::from(out)
    }

    /// Authenticates and opens a cookie; `now_ms` and `lifetime_ms` decide staleness.
    pub fn open(&self, c: &[u8], now_ms: u64, lifetime_ms: u64) -> Result<CookieData, CookieError> {
        if c.len() < FIXED_LEN + MAC_LEN || c[0] != VERSION {
            return Err(CookieError::Invalid);
        }
        let naddrs = c[FIXED_LEN - 1] as usize;
        if naddrs > MAX_COOKIE_ADDRS || c.len() != FIXED_LEN + 17 * naddrs + MAC_LEN {
            return Err(CookieError::Invalid);
        }
        let (body, tag) = c.split_at(c.len() - MAC_LEN);
        let key = self
            .keys
            .iter()
            .find(|(id, _)| *id == c[1])
            .ok_or(CookieError::Invalid)?;
        Self::mac(&key.1, body)
            .verify_slice(tag)
            .map_err(|_| CookieError::Invalid)?;
        let u32_at =
            |i: usize| u32::from_be_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
        let u16_at = |i: usize| u16::from_be_bytes([body[i], body[i + 1]]);
        let created_ms =
            u64::from_be_bytes(body[2..10].try_into().map_err(|_| CookieError::Invalid)?);
        let origin_ip = get_ip(&body[46..63]).ok_or(CookieError::Invalid)?;
        let mut peer_addrs = Vec::with_capacity(naddrs);
        for i in 0..naddrs {
            let at = FIXED_LEN + 17 * i;
            peer_addrs.push(get_ip(&body[at..at + 17]).ok_or(CookieError::Invalid)?);
        }
        let age = now_ms.saturating_sub(created_ms);
        if age > lifetime_ms {
            return Err(CookieError::Stale(age - lifetime_ms));
        }
        Ok(CookieData {
            created_ms,
            local_tag: u32_at(10),
            local_tsn: u32_at(14),
            peer_tag: u32_at(18),
            peer_tsn: u32_at(22),
            peer_rwnd: u32_at(26),
            tie_local: u32_at(30),
            tie_peer: u32_at(34),
            peer_os: u16_at(38),
            peer_mis: u16_at(40),
            local_port: u16_at(42),
            peer_port: u16_at(44),
            origin: SocketAddr::new(origin_ip, u16_at(63)),
            peer_addrs,
            peer_pr: body[65] & 1 != 0,
            peer_reconfig: body[65] & 2 != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(addrs: Vec<IpAddr>) -> CookieData {
        CookieData {
            created_ms: 1000,
            local_tag: 1,
            local_tsn: 2,
            peer_tag: 3,
            peer_tsn: 4,
            peer_rwnd: 5,
            peer_os: 6,
            peer_mis: 7,
            tie_local: 8,
            tie_peer: 9,
            local_port: 10,
            peer_port: 11,
            origin: "[2001:db8::1]:9899".parse().unwrap(),
            peer_addrs: addrs,
            peer_pr: true,
            peer_reconfig: false,
        }
    }

    proptest! {
        #[test]
        fn seal_open_roundtrip(tags in any::<[u32; 7]>(), ports in any::<[u16; 4]>(),
                               v4 in any::<[u8; 4]>(), port in any::<u16>(),
                               addrs in proptest::collection::vec(any::<[u8; 16]>(), 0..8)) {
            let d = CookieData {
                created_ms: 5, local_tag: tags[0], local_tsn: tags[1], peer_tag: tags[2],
                peer_tsn: tags[3], peer_rwnd: tags[4], tie_local: tags[5], tie_peer: tags[6],
                peer_os: ports[0], peer_mis: ports[1], local_port: ports[2], peer_port: ports[3],
                origin: SocketAddr::new(IpAddr::from(v4), port),
                peer_addrs: addrs.into_iter().map(IpAddr::from).collect(),
                peer_pr: tags[0] & 1 == 0,
                peer_reconfig: tags[1] & 1 == 0,
            };
            let s = CookieSecret::new([7; 32]);
            prop_assert_eq!(s.open(&s.seal(&d), 5, 10), Ok(d));
        }

        #[test]
        fn open_is_total(c in proptest::collection::vec(any::<u8>(), 0..300)) {
            let s = CookieSecret::new([7; 32]);
            prop_assert!(s.open(&c, 0, 1000).is_err());
        }
    }

    #[test]
    fn tamper_stale_and_rotation() {
        let mut s = CookieSecret::new([1; 32]);
        let d = data(vec!["10.0.0.1".parse().unwrap()]);
        let c = s.seal(&d);
        let mut bad = c.to_vec();
        bad[12] ^= 1;
        assert_eq!(s.open(&bad, 1000, 10), Err(CookieError::Invalid));
        assert_eq!(s.open(&c, 1500, 100), Err(CookieError::Stale(400)));
        s.rotate([2; 32]);
        assert_eq!(s.open(&c, 1000, 10).as_ref(), Ok(&d));
        s.rotate([3; 32]);
        assert_eq!(s.open(&c, 1000, 10), Err(CookieError::Invalid));
        let other = CookieSecret::new([9; 32]);
        assert_eq!(other.open(&s.seal(&d), 1000, 10), Err(CookieError::Invalid));
    }
}
