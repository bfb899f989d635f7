//! Domain types shared by the wire codec, the handlespace and the state machines.
//!
//! These are the *meaning* of RFC 5354 parameters, independent of their encoding:
//! the codec in [`crate::wire`] maps them to and from bytes, the handlespace in
//! [`crate::handlespace`] stores them.

use std::net::IpAddr;

/// Largest pool handle we accept (RFC 5354 leaves it open; RSPLIB uses 32 bytes,
/// we allow more but bound it so that hostile input cannot grow the handlespace).
pub const MAX_POOL_HANDLE_LEN: usize = 256;

/// A pool handle: opaque bytes naming a pool (RFC 5354 §3.9).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolHandle(Vec<u8>);

impl PoolHandle {
    /// A pool handle from bytes; `None` when empty or longer than [`MAX_POOL_HANDLE_LEN`].
    pub fn new(bytes: impl Into<Vec<u8>>) -> Option<Self> {
        let bytes = bytes.into();
        if bytes.is_empty() || bytes.len() > MAX_POOL_HANDLE_LEN {
            None
        } else {
            Some(Self(bytes))
        }
    }

    /// The raw handle bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for PoolHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PoolHandle({})", self)
    }
}

impl std::fmt::Display for PoolHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) if s.chars().all(|c| !c.is_control()) => f.write_str(s),
            _ => {
                for b in &self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }
    }
}

/// Pool element identifier: a 32-bit number chosen by the PE (RFC 5354 §3.12).
pub type PeId = u32;

/// Registrar (ENRP server) identifier: a 32-bit number (RFC 5353 §4).
pub type RegistrarId = u32;

/// Load as defined by RFC 5356 §3.1: 0 = idle, `u32::MAX` = 100 % loaded.
pub type Load = u32;

/// Transport protocol of a user transport parameter (RFC 5354 §3.3–3.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportProtocol {
    /// SCTP transport parameter (our SCTP runs over UDP, RFC 6951).
    Sctp,
    /// TCP transport parameter.
    Tcp,
    /// UDP transport parameter.
    Udp,
    /// UDP-Lite transport parameter.
    UdpLite,
}

/// Transport use field of SCTP/TCP transport parameters (RFC 5354 §3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportUse {
    /// 0x0000: data only.
    DataOnly,
    /// 0x0001: data plus control (the PE accepts ASAP control on this transport).
    DataPlusControl,
}

/// A user or registrar transport: protocol, port, one or more addresses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Transport {
    /// Which transport parameter this is.
    pub protocol: TransportProtocol,
    /// Port number.
    pub port: u16,
    /// Transport use (meaningful for SCTP and TCP; `DataOnly` otherwise).
    pub transport_use: TransportUse,
    /// Addresses, at least one (multi-homing for SCTP).
    pub addresses: Vec<IpAddr>,
}

/// A pool member selection policy with its per-PE policy data (RFC 5356).
///
/// Type codes: non-adaptive policies 0x0000_00xx, adaptive 0x4000_00xx, as
/// registered by RFC 5356 §7. Extensions beyond RFC 5356 carry codes in the
/// same spaces and are documented where defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// RFC 5356 §4.1 Round Robin (0x00000001).
    RoundRobin,
    /// RFC 5356 §4.2 Weighted Round Robin (0x00000002).
    WeightedRoundRobin { weight: u32 },
    /// RFC 5356 §4.3 Random (0x00000003).
    Random,
    /// RFC 5356 §4.4 Weighted Random (0x00000004).
    WeightedRandom { weight: u32 },
    /// RFC 5356 §4.5 Priority (0x00000005): highest priority first.
    Priority { priority: u32 },
    /// RFC 5356 §5.1 Least Used (0x40000001).
    LeastUsed { load: Load },
    /// RFC 5356 §5.2 Least Used with Degradation (0x40000002).
    LeastUsedDegradation { load: Load, degradation: Load },
    /// RFC 5356 §5.3 Priority Least Used (0x40000003): load + load increment.
    PriorityLeastUsed { load: Load, increment: Load },
    /// RFC 5356 §5.4 Randomized Least Used (0x40000004).
    RandomizedLeastUsed { load: Load },
}

impl Policy {
    /// The policy's type code as registered (RFC 5356 §7).
    pub fn type_code(&self) -> u32 {
        match self {
            Policy::RoundRobin => 0x0000_0001,
            Policy::WeightedRoundRobin { .. } => 0x0000_0002,
            Policy::Random => 0x0000_0003,
            Policy::WeightedRandom { .. } => 0x0000_0004,
            Policy::Priority { .. } => 0x0000_0005,
            Policy::LeastUsed { .. } => 0x4000_0001,
            Policy::LeastUsedDegradation { .. } => 0x4000_0002,
            Policy::PriorityLeastUsed { .. } => 0x4000_0003,
            Policy::RandomizedLeastUsed { .. } => 0x4000_0004,
        }
    }

    /// Whether two policies are the same kind (the pool-consistency check of
    /// RFC 5356 compares types, not policy data).
    pub fn same_kind(&self, other: &Policy) -> bool {
        self.type_code() == other.type_code()
    }
}
