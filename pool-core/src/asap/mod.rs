#![warn(missing_docs)]
//! Sans-IO ASAP state machines (RFC 5352): the registrar, the pool element
//! side and the pool user side.
//!
//! Like `quinn-proto`, nothing here touches a socket or a clock. A driver
//! feeds each machine the messages it received (already decoded by
//! [`crate::wire`]) and the current [`Instant`], then drains the queued
//! actions (messages to send, associations to open or close) and events, and
//! sleeps until [`poll_timeout`](registrar::Registrar::poll_timeout) to call
//! `handle_timeout`. Randomness (PE identifiers, nonces, random policies) is
//! injected as an `RngCore`.
//!
//! * [`registrar::Registrar`]: the registrar (PR) side of ASAP.
//! * [`pe::PoolElementClient`]: registration, re-registration, keep-alive
//!   answers and server hunt of a pool element.
//! * [`pu::PoolUserClient`]: handle resolution with a cache, PU-side
//!   selection, failure reports and server hunt of a pool user.
//! * [`auth`]: signing and verification of the registration authentication
//!   extension ([`crate::wire::auth`]).

pub mod auth;
pub mod pe;
pub mod pu;
pub mod registrar;

use std::time::{Duration, Instant};

use crate::handlespace::{self, HandlespaceError, OperationErrorCause, Registration};
use crate::types::{Load, Policy, RegistrarId};
use crate::wire::{self, ErrorCause, SelectionPolicy};

/// Opaque identifier of one association (or connection) the driver manages.
///
/// The registrar answers on the peer a message came from and sends endpoint
/// keep-alives to the peer a PE registered on; it never interprets the value.
pub type PeerId = u64;

/// Maps the driver's monotonic [`Instant`]s to wall-clock milliseconds since
/// the Unix epoch, which the authentication timestamps use.
///
/// The machines never read a clock: the driver anchors this once (and may
/// re-anchor to follow wall-clock adjustments).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallClock {
    anchor: Instant,
    anchor_unix_ms: u64,
}

impl WallClock {
    /// A clock on which `anchor` is `anchor_unix_ms` milliseconds after the epoch.
    pub fn new(anchor: Instant, anchor_unix_ms: u64) -> Self {
        Self {
            anchor,
            anchor_unix_ms,
        }
    }

    /// Milliseconds since the Unix epoch at `now` (saturating at both ends).
    pub fn unix_ms(&self, now: Instant) -> u64 {
        if now >= self.anchor {
            let d = millis(now - self.anchor);
            self.anchor_unix_ms.saturating_add(d)
        } else {
            let d = millis(self.anchor - now);
            self.anchor_unix_ms.saturating_sub(d)
        }
    }
}

/// A duration in whole milliseconds, saturating at `u64::MAX`.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The load a policy reports, for adaptive policies (RFC 5356 §5).
pub fn policy_load(policy: &Policy) -> Option<Load> {
    match *policy {
        Policy::LeastUsed { load }
        | Policy::LeastUsedDegradation { load, .. }
        | Policy::PriorityLeastUsed { load, .. }
        | Policy::RandomizedLeastUsed { load } => Some(load),
        Policy::RoundRobin
        | Policy::WeightedRoundRobin { .. }
        | Policy::Random
        | Policy::WeightedRandom { .. }
        | Policy::Priority { .. } => None,
    }
}

/// The same policy with its load replaced; non-adaptive policies are returned unchanged.
pub fn policy_with_load(policy: Policy, new: Load) -> Policy {
    match policy {
        Policy::LeastUsed { .. } => Policy::LeastUsed { load: new },
        Policy::LeastUsedDegradation { degradation, .. } => Policy::LeastUsedDegradation {
            load: new,
            degradation,
        },
        Policy::PriorityLeastUsed { increment, .. } => Policy::PriorityLeastUsed {
            load: new,
            increment,
        },
        Policy::RandomizedLeastUsed { .. } => Policy::RandomizedLeastUsed { load: new },
        other => other,
    }
}

/// A wire pool element as a handlespace registration owned by `home`.
///
/// Policies the handlespace cannot select with (unknown type codes) are
/// refused as an inconsistent pooling policy: the registrar could store them
/// but never answer a handle resolution for them correctly.
pub(crate) fn registration_from_wire(
    element: &wire::PoolElement,
    home: RegistrarId,
    life: Duration,
) -> Result<Registration, ErrorCause> {
    let policy = match &element.policy {
        SelectionPolicy::Known(p) => *p,
        SelectionPolicy::Unknown { .. } => return Err(ErrorCause::InconsistentPoolingPolicy(None)),
    };
    Ok(Registration {
        id: element.id,
        home,
        user_transports: vec![element.user_transport.clone()],
        asap_transport: element.asap_transport.clone(),
        policy,
        registration_life: life,
    })
}

/// A handlespace PE as a wire pool element (ASAP transport left out, as in
/// handle resolution responses).
pub(crate) fn element_to_wire(pe: &handlespace::PoolElement) -> Option<wire::PoolElement> {
    Some(wire::PoolElement {
        id: pe.id,
        home_registrar: pe.home,
        registration_life: u32::try_from(pe.registration_life.as_millis()).unwrap_or(u32::MAX),
        user_transport: pe.user_transports.first()?.clone(),
        policy: SelectionPolicy::Known(pe.policy),
        asap_transport: None,
    })
}

/// The wire error cause for a handlespace refusal.
pub(crate) fn handlespace_cause(err: &HandlespaceError) -> ErrorCause {
    match err.cause() {
        OperationErrorCause::InvalidValues => ErrorCause::InvalidValues(None),
        OperationErrorCause::InconsistentPoolingPolicy => {
            ErrorCause::InconsistentPoolingPolicy(None)
        }
        OperationErrorCause::LackOfResources => ErrorCause::LackOfResources,
        OperationErrorCause::InconsistentTransportType => {
            ErrorCause::InconsistentTransportType(None)
        }
        OperationErrorCause::InconsistentDataControlConfiguration => {
            ErrorCause::InconsistentDataControlConfiguration
        }
        OperationErrorCause::UnknownPoolHandle => ErrorCause::UnknownPoolHandle,
    }
}
