//! Configuration, validated once and then shared (`Arc`) by the endpoint and its
//! associations.

use std::net::IpAddr;
use std::time::Duration;

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value is outside its allowed range.
    #[error("invalid configuration: {0}")]
    Invalid(&'static str),
}

/// Per-association protocol parameters (RFC 9260 §16 names in brackets).
#[derive(Debug, Clone)]
pub struct AssociationConfig {
    /// Initial retransmission timeout [RTO.Initial].
    pub rto_initial: Duration,
    /// Lower bound of the retransmission timeout [RTO.Min].
    pub rto_min: Duration,
    /// Upper bound of the retransmission timeout [RTO.Max].
    pub rto_max: Duration,
    /// Consecutive unanswered retransmissions or heartbeats before the association is
    /// declared dead [Association.Max.Retrans].
    pub max_retransmissions: u32,
    /// Consecutive errors on one path before it is marked inactive [Path.Max.Retrans].
    pub path_max_retransmissions: u32,
    /// INIT / COOKIE ECHO retransmissions before the handshake fails [Max.Init.Retransmits].
    pub max_init_retransmissions: u32,
    /// Interval between heartbeats on an idle path [HB.interval]; `None` disables them.
    pub heartbeat_interval: Option<Duration>,
    /// Longest delay of a SACK [SACK delay].
    pub sack_delay: Duration,
    /// SACK at least every this many packets carrying DATA [SACK frequency].
    pub sack_frequency: u32,
    /// Receive buffer in bytes; advertised as a_rwnd.
    pub receive_buffer: u32,
    /// Send buffer in bytes (queued plus unacknowledged); `send` fails beyond it.
    pub send_buffer: usize,
    /// Largest message accepted by `send` and by reassembly.
    pub max_message_size: usize,
    /// Outbound streams requested.
    pub outbound_streams: u16,
    /// Inbound streams accepted.
    pub inbound_streams: u16,
    /// Default largest UDP payload per path (path MTU minus IP and UDP headers).
    pub pmtu: usize,
    /// Per-peer-IP overrides of `pmtu` (e.g. 65,507 for loopback peers), applied when a
    /// path is created; `Association::set_path_mtu` changes one later.
    pub pmtu_overrides: Vec<(std::net::IpAddr, usize)>,
    /// Maximum number of packets sent in one burst per path [Max.Burst]; at small PMTUs
    /// a burst may still carry 64 KiB (`assoc::BURST_BYTES`, one GSO train).
    pub max_burst: usize,
    /// Offer partial reliability (RFC 3758 FORWARD-TSN) so `send_with` can abandon
    /// messages by lifetime or retransmission count.
    pub partial_reliability: bool,
    /// Offer stream reconfiguration (RFC 6525 RE-CONFIG, advertised in the Supported
    /// Extensions parameter): answer the peer's stream resets and allow
    /// `Association::reset_streams` when the peer offers it too.
    pub stream_reset: bool,
}

impl Default for AssociationConfig {
    fn default() -> Self {
        AssociationConfig {
            rto_initial: Duration::from_secs(1),
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(60),
            max_retransmissions: 10,
            path_max_retransmissions: 5,
            max_init_retransmissions: 8,
            heartbeat_interval: Some(Duration::from_secs(30)),
            sack_delay: Duration::from_millis(200),
            sack_frequency: 2,
            receive_buffer: 1 << 20,
            send_buffer: 1 << 20,
            max_message_size: 256 * 1024,
            outbound_streams: 256,
            inbound_streams: 256,
            pmtu: 1472,
            pmtu_overrides: Vec::new(),
            max_burst: 16,
            partial_reliability: true,
            stream_reset: true,
        }
    }
}

/// Smallest path MTU accepted (RFC 9260 requires 1200 bytes of SCTP packet on IPv6;
/// we allow smaller test values but never below what an INIT needs).
pub const MIN_PMTU: usize = 512;
/// Largest UDP payload (IPv4).
pub const MAX_PMTU: usize = 65_507;

impl AssociationConfig {
    /// Checks the values against each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.rto_min.is_zero() || self.rto_min > self.rto_max {
            return Err(ConfigError::Invalid("rto_min must be > 0 and <= rto_max"));
        }
        if self.rto_initial < self.rto_min || self.rto_initial > self.rto_max {
            return Err(ConfigError::Invalid(
                "rto_initial must be within [rto_min, rto_max]",
            ));
        }
        if !(MIN_PMTU..=MAX_PMTU).contains(&self.pmtu) {
            return Err(ConfigError::Invalid("pmtu out of range"));
        }
        if self.max_message_size == 0 || self.max_message_size > self.receive_buffer as usize {
            return Err(ConfigError::Invalid(
                "max_message_size must be in 1..=receive_buffer",
            ));
        }
        if self
            .pmtu_overrides
            .iter()
            .any(|(_, m)| !(MIN_PMTU..=MAX_PMTU).contains(m))
        {
            return Err(ConfigError::Invalid("pmtu override out of range"));
        }
        let largest = self
            .pmtu_overrides
            .iter()
            .map(|(_, m)| *m)
            .fold(self.pmtu, usize::max);
        if (self.receive_buffer as usize) < 2 * largest {
            return Err(ConfigError::Invalid("receive_buffer must hold two packets"));
        }
        if self.send_buffer < self.max_message_size {
            return Err(ConfigError::Invalid(
                "send_buffer must hold the largest message",
            ));
        }
        if self.outbound_streams == 0 || self.inbound_streams == 0 {
            return Err(ConfigError::Invalid("stream counts must be > 0"));
        }
        if self.sack_frequency == 0 || self.max_burst == 0 {
            return Err(ConfigError::Invalid(
                "sack_frequency and max_burst must be > 0",
            ));
        }
        if self.heartbeat_interval.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::Invalid("heartbeat_interval must be > 0"));
        }
        Ok(())
    }

    /// Latest time after the last sign of life at which a peer that stops answering on
    /// an idle single-path association is declared dead (`Closed { Timeout }`), given the
    /// path's RTO at that moment: one heartbeat interval, then
    /// `max_retransmissions + 1` unanswered heartbeats with exponential RTO back-off.
    pub fn failure_detection_bound(&self, rto: Duration) -> Option<Duration> {
        let hb = self.heartbeat_interval?;
        let mut total = hb + rto;
        let mut r = rto;
        for _ in 0..=self.max_retransmissions {
            total += r;
            r = (r * 2).min(self.rto_max);
        }
        Some(total)
    }
}

/// Endpoint-wide settings.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Parameters for every association of this endpoint.
    pub association: AssociationConfig,
    /// Accept associations started by peers (servers); a client-only endpoint answers
    /// INIT with ABORT.
    pub accept_incoming: bool,
    /// SCTP ports INITs are accepted on; empty means any.
    pub listen_ports: Vec<u16>,
    /// Addresses advertised in INIT / INIT ACK for multi-homing; empty advertises none,
    /// so the peer uses only the source address of our packets.
    pub local_addresses: Vec<IpAddr>,
    /// How long a state cookie stays valid [Valid.Cookie.Life].
    pub cookie_lifetime: Duration,
    /// Bound on replies queued by the stateless part (INIT ACK, ABORT, ...); more are dropped.
    pub max_stateless_replies: usize,
    /// Stateless replies (INIT ACK to a new INIT, answers to out-of-the-blue packets)
    /// one source address (IP and UDP port) may cause per second; the rest are dropped
    /// before any cookie is computed, so a flood from a few sources costs little and
    /// does not crowd out other peers. 0 disables the limit.
    pub stateless_replies_per_source: u32,
    /// Bound on concurrent associations; further INITs are answered with ABORT.
    pub max_associations: usize,
    /// When set, a message's bytes stay counted against the receive window after
    /// [`crate::Endpoint::poll_event`] hands it out, until the user reports them with
    /// [`crate::Endpoint::consumed`]: a slow consumer then closes the peer's window
    /// instead of growing a queue behind the engine. Off: the window opens on hand-out.
    pub manual_receive_window: bool,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            association: AssociationConfig::default(),
            accept_incoming: true,
            listen_ports: Vec::new(),
            local_addresses: Vec::new(),
            cookie_lifetime: Duration::from_secs(60),
            max_stateless_replies: 256,
            stateless_replies_per_source: 1000,
            max_associations: 65_536,
            manual_receive_window: false,
        }
    }
}

impl EndpointConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.association.validate()?;
        if self.cookie_lifetime.is_zero() {
            return Err(ConfigError::Invalid("cookie_lifetime must be > 0"));
        }
        if self.local_addresses.len() > 16 {
            return Err(ConfigError::Invalid("at most 16 local addresses"));
        }
        Ok(())
    }
}
