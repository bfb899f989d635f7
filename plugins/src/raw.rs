//! Abort and restart: no framing at all.
//!
//! Failover is transparent only while the backend has sent nothing: then the backend
//! cannot have told the client anything, and replaying every client byte to a new backend
//! is indistinguishable from the first attempt (for protocols where the client speaks
//! first and the request has no side effects before the first reply byte). Once the
//! backend spoke, the session is not resumable.

use pool_core::cookie::CookieParts;

use crate::session::{forward, PublicState};
use crate::{
    BackendProgress, ClientProgress, Delivery, Failover, NotResumable, PluginError, Restore,
    Resume, SessionState,
};

/// Configuration of the raw plugin.
#[derive(Clone, Debug)]
pub struct RawConfig {
    /// Client bytes kept for replay before the backend's first byte; beyond it the session
    /// is not resumable.
    pub max_replay_bytes: usize,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            max_replay_bytes: 1 << 20,
        }
    }
}

/// Raw plugin state of one session.
#[derive(Debug)]
pub struct RawSession {
    cfg: RawConfig,
    client: Vec<u8>,
    overflow: bool,
    delivered: u64,
}

impl RawSession {
    /// A fresh session.
    pub fn new(cfg: RawConfig) -> Self {
        Self {
            cfg,
            client: Vec::new(),
            overflow: false,
            delivered: 0,
        }
    }
}

impl SessionState for RawSession {
    fn protocol(&self) -> &'static str {
        "raw"
    }

    fn on_client_bytes(&mut self, bytes: &[u8]) -> ClientProgress {
        if self.delivered == 0 && !self.overflow {
            if self.client.len() + bytes.len() > self.cfg.max_replay_bytes {
                self.overflow = true;
                self.client = Vec::new();
            } else {
                self.client.extend_from_slice(bytes);
            }
        }
        ClientProgress::default()
    }

    fn on_backend_bytes(&mut self, bytes: &[u8], deliver: &mut Vec<Delivery>) -> BackendProgress {
        forward(deliver, 0..bytes.len());
        if !bytes.is_empty() && self.delivered == 0 {
            // Never needed again: the session can no longer move.
            self.client = Vec::new();
        }
        self.delivered += bytes.len() as u64;
        BackendProgress::default()
    }

    fn public_state(&self) -> PublicState {
        PublicState {
            answered: 0,
            delivered: self.delivered,
        }
    }

    fn checkpoint(&mut self) -> CookieParts {
        CookieParts {
            public: self.public_state().encode(),
            ..CookieParts::default()
        }
    }

    fn restore(&mut self, parts: &CookieParts) -> Result<Restore, PluginError> {
        let public = PublicState::decode(&parts.public)?;
        if public.delivered != 0 {
            return Err(PluginError::BadCookie("raw session already answered"));
        }
        Ok(Restore::default())
    }

    fn failover(&mut self) -> Failover {
        if self.delivered > 0 {
            Failover::NotResumable(NotResumable::BackendSpoke)
        } else if self.overflow {
            Failover::NotResumable(NotResumable::ReplayOverflow)
        } else {
            Failover::Resume(Resume {
                replay: self.client.clone(),
                ..Resume::default()
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_everything_until_backend_speaks() {
        let mut s = RawSession::new(RawConfig::default());
        s.on_client_bytes(b"hello ");
        s.on_client_bytes(b"world");
        let Failover::Resume(r) = s.failover() else {
            panic!("should resume")
        };
        assert_eq!(r.replay, b"hello world");
        // Failover again before any reply: still everything.
        s.on_client_bytes(b"!");
        let Failover::Resume(r) = s.failover() else {
            panic!("should resume")
        };
        assert_eq!(r.replay, b"hello world!");
        let mut d = Vec::new();
        s.on_backend_bytes(b"x", &mut d);
        assert_eq!(d, vec![Delivery::Forward(0..1)]);
        assert_eq!(
            s.failover(),
            Failover::NotResumable(NotResumable::BackendSpoke)
        );
        assert_eq!(s.public_state().delivered, 1);
    }

    #[test]
    fn empty_backend_chunk_does_not_count() {
        let mut s = RawSession::new(RawConfig::default());
        s.on_client_bytes(b"a");
        s.on_backend_bytes(b"", &mut Vec::new());
        assert!(matches!(s.failover(), Failover::Resume(_)));
    }

    #[test]
    fn overflow_is_not_resumable() {
        let mut s = RawSession::new(RawConfig {
            max_replay_bytes: 4,
        });
        s.on_client_bytes(b"abc");
        s.on_client_bytes(b"de");
        assert_eq!(
            s.failover(),
            Failover::NotResumable(NotResumable::ReplayOverflow)
        );
    }

    #[test]
    fn restore_refuses_a_session_that_already_had_replies() {
        let mut s = RawSession::new(RawConfig::default());
        let parts = CookieParts {
            public: PublicState {
                answered: 0,
                delivered: 5,
            }
            .encode(),
            ..CookieParts::default()
        };
        assert!(s.restore(&parts).is_err());
        assert_eq!(
            s.restore(&CookieParts::default()).unwrap(),
            Restore::default()
        );
    }
}
