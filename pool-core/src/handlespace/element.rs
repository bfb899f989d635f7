//! A pool element as the handlespace stores it, and the registration that creates it.

use std::time::{Duration, Instant};

use crate::policy::SelectionState;
use crate::types::{PeId, Policy, RegistrarId, Transport};

/// What a PE registers (ASAP_REGISTRATION, or an ENRP handle update from a peer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// PE identifier, unique within the pool.
    pub id: PeId,
    /// Home registrar: the one that monitors the PE.
    pub home: RegistrarId,
    /// Transports on which the PE serves pool users; at least one, each with an address.
    pub user_transports: Vec<Transport>,
    /// Transport on which the PE accepts ASAP control (endpoint keep-alives), if separate.
    pub asap_transport: Option<Transport>,
    /// Selection policy and its per-PE data.
    pub policy: Policy,
    /// How long the registration stays valid without being renewed.
    pub registration_life: Duration,
}

/// A PE in the handlespace.
#[derive(Clone, Debug)]
pub struct PoolElement {
    /// PE identifier.
    pub id: PeId,
    /// Home registrar.
    pub home: RegistrarId,
    /// User transports.
    pub user_transports: Vec<Transport>,
    /// ASAP control transport, if any.
    pub asap_transport: Option<Transport>,
    /// Policy with the latest reported policy data.
    pub policy: Policy,
    /// Registration life of the latest (re-)registration.
    pub registration_life: Duration,
    /// When the latest (re-)registration arrived.
    pub last_update: Instant,
    /// When the registration runs out (`None`: life too long to represent).
    pub(crate) expires_at: Option<Instant>,
    /// Registrar-side selection state.
    pub(crate) sel: SelectionState,
    /// This PE's share of its home registrar's checksum (unfolded sum).
    pub(crate) checksum_words: u32,
}

impl PoolElement {
    /// When the registration runs out, if representable.
    pub fn expires_at(&self) -> Option<Instant> {
        self.expires_at
    }

    /// Whether the registration ran out at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// Least Used with Degradation: the degradation accumulated since the last report.
    pub fn degradation(&self) -> u32 {
        self.sel.degradation
    }

    pub(crate) fn from_registration(reg: Registration, now: Instant, checksum_words: u32) -> Self {
        Self {
            id: reg.id,
            home: reg.home,
            user_transports: reg.user_transports,
            asap_transport: reg.asap_transport,
            policy: reg.policy,
            registration_life: reg.registration_life,
            last_update: now,
            expires_at: now.checked_add(reg.registration_life),
            sel: SelectionState::default(),
            checksum_words,
        }
    }
}
