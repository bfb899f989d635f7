//! What a lab PU and a lab PE say to each other on one session, on top of the
//! session protocol of [`crate::session`] (one association per request, stream 0,
//! ordered):
//!
//! | direction | message | meaning |
//! |-----------|---------|---------|
//! | PU→PE | `Control::Open`, then DATA `R` + size + stamp | a new request |
//! | PU→PE | DATA `T` + stamp, then ASAP `COOKIE_ECHO` | resume a request from its last cookie |
//! | PE→PU | ASAP `COOKIE` (stamp in the public part) | accepted (the first one) / checkpoint (the others) |
//! | PE→PU | DATA `D` + stamp | the request is complete |
//! | PE→PU | DATA `B` + stamp | rejected: the PE is busy (Reject and Retry) |
//! | both | ASAP `ENDPOINT_KEEP_ALIVE(_ACK)` | session keep-alive |
//!
//! Numbers are big-endian f64. A *stamp* is the scenario time the message was
//! sent in the model (a completion's stamp is the time the work finished, even
//! if the PE's timer woke later): the receiver acts on it a network delay after
//! it ([`super::delay`]).
//!
//! The checkpoint travels the way a PPE's does: a state cookie sealed with the
//! pool key ([`pool_core::cookie::KeyRing`]); its private part holds the request
//! size and the calculations done, so a resuming PE needs nothing else; its
//! public part (readable by the PU, outside the seal) holds the stamp.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use pool_core::cookie::{CookieParts, KeyRing};
use pool_core::types::PoolHandle;

use crate::session;
use crate::transport::Message;

/// The lab's pool handle.
pub const POOL: &[u8] = b"calcapp";
/// Environment variable carrying the pool key (hex) from the lab to its PEs.
pub const KEY_ENV: &str = "POOLGATE_LAB_KEY";
/// How long a checkpoint cookie stays valid.
const COOKIE_LIFETIME: Duration = Duration::from_secs(3600);

const TAG_REQUEST: u8 = b'R';
const TAG_STAMP: u8 = b'T';
const TAG_DONE: u8 = b'D';
const TAG_BUSY: u8 = b'B';

/// The lab's pool handle as a [`PoolHandle`].
pub fn pool() -> PoolHandle {
    PoolHandle::new(POOL.to_vec()).expect("a 7-byte constant is a valid pool handle")
}

fn tagged(tag: u8, numbers: &[f64]) -> Message {
    let mut b = Vec::with_capacity(1 + 8 * numbers.len());
    b.push(tag);
    for x in numbers {
        b.extend_from_slice(&x.to_be_bytes());
    }
    session::data(Bytes::from(b))
}

/// The finite numbers after `tag`, if `data` is `tag` and exactly `N` of them.
fn numbers<const N: usize>(data: &[u8], tag: u8) -> Option<[f64; N]> {
    let rest = data.strip_prefix(&[tag])?;
    if rest.len() != 8 * N {
        return None;
    }
    let mut out = [0.0; N];
    for (x, chunk) in out.iter_mut().zip(rest.chunks_exact(8)) {
        *x = f64::from_be_bytes(chunk.try_into().ok()?);
        if !x.is_finite() {
            return None;
        }
    }
    Some(out)
}

/// A request of `size` calculations sent at scenario time `sent` (follows `Control::Open`).
pub fn request(size: f64, sent: f64) -> Message {
    tagged(TAG_REQUEST, &[size, sent])
}

/// The size and stamp in a request message, if it is one.
pub fn parse_request(data: &[u8]) -> Option<(f64, f64)> {
    let [size, sent] = numbers::<2>(data, TAG_REQUEST)?;
    (size > 0.0).then_some((size, sent))
}

/// The stamp of the message that follows (a `COOKIE_ECHO`).
pub fn stamp(sent: f64) -> Message {
    tagged(TAG_STAMP, &[sent])
}

/// The time in a stamp message, if it is one.
pub fn parse_stamp(data: &[u8]) -> Option<f64> {
    numbers::<1>(data, TAG_STAMP).map(|[t]| t)
}

/// What a PE says about a request besides cookies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Complete.
    Done,
    /// Rejected (too busy).
    Busy,
}

impl Reply {
    fn tag(self) -> u8 {
        match self {
            Reply::Done => TAG_DONE,
            Reply::Busy => TAG_BUSY,
        }
    }

    /// The DATA message, stamped `sent`.
    pub fn message(self, sent: f64) -> Message {
        tagged(self.tag(), &[sent])
    }

    /// Decodes a reply and its stamp.
    pub fn parse(data: &[u8]) -> Option<(Reply, f64)> {
        [Reply::Done, Reply::Busy]
            .into_iter()
            .find_map(|r| numbers::<1>(data, r.tag()).map(|[t]| (r, t)))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The key ring of a hex key.
pub fn key_ring(hex_key: &str) -> anyhow::Result<KeyRing> {
    let key = hex::decode(hex_key.trim()).map_err(|e| anyhow::anyhow!("lab key: {e}"))?;
    KeyRing::new([(1u16, key)]).map_err(|e| anyhow::anyhow!("lab key: {e}"))
}

/// A fresh random pool key, hex.
pub fn new_key() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Seals a checkpoint: `done` of `size` calculations, sent at scenario time `sent`.
pub fn seal(keys: &KeyRing, size: f64, done: f64, sent: f64) -> anyhow::Result<Vec<u8>> {
    let mut private = Vec::with_capacity(16);
    private.extend_from_slice(&size.to_be_bytes());
    private.extend_from_slice(&done.to_be_bytes());
    let parts = CookieParts {
        public: sent.to_be_bytes().to_vec(),
        immutable: Vec::new(),
        private,
    };
    let expiry = now_ms() + COOKIE_LIFETIME.as_millis() as u64;
    keys.seal(&pool(), &parts, expiry, &mut rand::rng())
        .map_err(|e| anyhow::anyhow!("sealing a checkpoint: {e}"))
}

/// The stamp in a checkpoint's public part (read without the key).
pub fn cookie_stamp(cookie: &[u8]) -> Option<f64> {
    let public = pool_core::cookie::read_public(cookie).ok()?;
    let t = f64::from_be_bytes(public.try_into().ok()?);
    t.is_finite().then_some(t)
}

/// Opens a checkpoint: (size, done).
pub fn open(keys: &KeyRing, cookie: &[u8]) -> anyhow::Result<(f64, f64)> {
    let parts = keys
        .open(&pool(), cookie, now_ms())
        .map_err(|e| anyhow::anyhow!("checkpoint cookie: {e}"))?;
    let p = &parts.private;
    if p.len() != 16 {
        anyhow::bail!("checkpoint cookie: private part of {} bytes", p.len());
    }
    let size = f64::from_be_bytes(p[..8].try_into()?);
    let done = f64::from_be_bytes(p[8..].try_into()?);
    if !(size.is_finite() && done.is_finite() && size > 0.0 && (0.0..=size).contains(&done)) {
        anyhow::bail!("checkpoint cookie: size {size}, done {done}");
    }
    Ok((size, done))
}

/// Scenario time on a scaled clock shared by processes: scenario second 0 is
/// `epoch` (wall clock), and one scenario second lasts `scale` real seconds.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Wall-clock time of scenario time 0.
    pub epoch: SystemTime,
    /// Real seconds per scenario second.
    pub scale: f64,
}

impl Clock {
    /// Scenario seconds now (negative before the epoch).
    pub fn now(&self) -> f64 {
        match SystemTime::now().duration_since(self.epoch) {
            Ok(d) => d.as_secs_f64() / self.scale,
            Err(e) => -e.duration().as_secs_f64() / self.scale,
        }
    }

    /// The real duration of `secs` scenario seconds.
    pub fn real(&self, secs: f64) -> Duration {
        Duration::from_secs_f64((secs * self.scale).max(0.0))
    }

    /// The tokio instant at which scenario time `t` comes.
    pub fn instant_at(&self, t: f64) -> tokio::time::Instant {
        let now = self.now();
        tokio::time::Instant::now() + self.real(t - now)
    }

    /// The epoch as nanoseconds since the Unix epoch (to hand to a child process).
    pub fn epoch_ns(&self) -> u128 {
        self.epoch
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    }

    /// A clock from [`Clock::epoch_ns`].
    pub fn from_epoch_ns(ns: u128, scale: f64) -> Clock {
        let ns = u64::try_from(ns).unwrap_or(u64::MAX);
        Clock {
            epoch: UNIX_EPOCH + Duration::from_nanos(ns),
            scale,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_replies_and_cookies_round_trip() {
        let m = request(1234.5, 17.25);
        assert_eq!(parse_request(&m.data), Some((1234.5, 17.25)));
        assert_eq!(parse_request(b"R"), None);
        assert_eq!(parse_request(&request(-1.0, 0.0).data), None);
        assert_eq!(parse_request(&request(1.0, f64::NAN).data), None);
        assert_eq!(parse_stamp(&stamp(3.5).data), Some(3.5));
        assert_eq!(parse_stamp(&m.data), None);
        assert_eq!(
            Reply::parse(&Reply::Done.message(2.0).data),
            Some((Reply::Done, 2.0))
        );
        assert_eq!(
            Reply::parse(&Reply::Busy.message(3.0).data),
            Some((Reply::Busy, 3.0))
        );
        assert_eq!(Reply::parse(b"x"), None);
        assert_eq!(Reply::parse(b"D"), None);
        let keys = key_ring(&new_key()).unwrap();
        let c = seal(&keys, 100.0, 40.0, 12.5).unwrap();
        assert_eq!(open(&keys, &c).unwrap(), (100.0, 40.0));
        assert_eq!(cookie_stamp(&c), Some(12.5));
        assert_eq!(cookie_stamp(b"junk"), None);
        let mut bad = c.clone();
        let n = bad.len() - 1;
        bad[n] ^= 1;
        assert!(open(&keys, &bad).is_err());
        let other = key_ring(&new_key()).unwrap();
        assert!(open(&other, &c).is_err());
    }
}
