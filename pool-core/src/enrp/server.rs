//! The ENRP server state machine (RFC 5353): one per registrar, next to its
//! ASAP [`Registrar`].
//!
//! Sans-IO like the ASAP machines. The driver
//! * feeds received ENRP messages (raw bytes, PPID 12) to [`EnrpServer::handle_bytes`],
//!   which authenticates, decodes and applies them to the registrar's handlespace
//!   and tells the driver which registrar sent them (to map associations to peers);
//! * forwards every [`RegistrarEvent`] of the ASAP side to
//!   [`EnrpServer::handle_registrar_event`] (→ ENRP_HANDLE_UPDATE to all peers),
//!   *before* it runs ENRP timeouts: a presence must not overtake an update
//!   whose change its checksum already counts (the peer would audit needlessly);
//! * calls [`EnrpServer::handle_timeout`] at [`EnrpServer::poll_timeout`]
//!   (presence, dead-peer detection, takeover, table-load timeouts);
//! * sends each [`EnrpAction::Send`] on its association to that registrar and
//!   opens associations to configured peers, introducing itself with
//!   [`EnrpServer::hello`].
//!
//! # Procedures
//! * **Presence**: every `presence_interval` an ENRP_PRESENCE with the checksum of
//!   the PEs this registrar is home of goes to every live peer. A peer not heard
//!   for `max_time_last_heard` is probed (R flag); no answer within
//!   `max_time_no_response` and it is dead.
//! * **Audit**: when a peer's announced checksum differs from the checksum of the
//!   PEs this registrar believes the peer owns, it asks the peer for its own PEs
//!   (HANDLE_TABLE_REQUEST, W flag) and replaces its view of them. The checksum is a
//!   16-bit sum, so two different sets of PEs can share it (PEs 2 and 11 against 3
//!   and 10 of one pool): a view that drifted that way is never caught by a
//!   mismatch. So a peer's PEs are also asked for when their last table is
//!   `full_audit_interval` old, whatever the checksums say.
//! * **Start-up**: the first peer heard is the mentor: its full handlespace is
//!   loaded (HANDLE_TABLE_REQUEST without W), piece by piece (M flag).
//! * **Updates**: every registration, re-registration and removal of a PE homed
//!   here becomes an ENRP_HANDLE_UPDATE to every live peer; updates received are
//!   applied with the sender as home (a sender may only add and delete its own PEs).
//! * **Takeover** (RFC 5353 §3.9): a dead peer's PEs are claimed with
//!   ENRP_INIT_TAKEOVER to all other live peers; when every one acknowledged,
//!   ENRP_TAKEOVER_SERVER announces the new home. When two registrars start the
//!   takeover of the same target, the one with the lower identifier wins: the
//!   higher one acknowledges the lower one's claim and drops its own, the lower
//!   one does not acknowledge the higher one's. The target itself answers an
//!   INIT_TAKEOVER with presence to all peers, which cancels the takeover. A peer
//!   that still hears the target does not agree. The claimant and the peers that
//!   must agree have to be a majority of the scope without the target, so a
//!   registrar cut off from all others does not take over live peers (with two
//!   registrars the survivor alone suffices, and a partition makes both homes).
//! * **Healing**: after a partition, the audit exchanges tables; a PE that a
//!   registrar monitors over a live association is never re-homed by a peer's
//!   table (only by a HANDLE_UPDATE: the PE re-registered there).
//!
//! # Taken-over PEs
//! The new home has no association to a taken-over PE. It does not open one
//! (pool elements need not listen for ASAP associations): the PE noticed the loss
//! of its registrar (association failure or an unanswered re-registration) and
//! hunts for another registrar by itself, re-registering within its
//! re-registration interval; whichever registrar it reaches becomes its home and
//! announces it with a HANDLE_UPDATE. Until then the PE stays in every
//! handlespace (resolvable) as *adopted* by the new home; a PE that never comes
//! back is removed when its registration life runs out.
//!
//! # Limits
//! A peer may own at most `max_pes_per_peer` PEs in this handlespace; one table
//! load accepts at most `max_table_load` PEs; a table response carries at most
//! [`MAX_TABLE_PES`] (codec) and this registrar sends at most `table_chunk`; at
//! most `max_peers` registrars are tracked. Refusals count in
//! [`EnrpCounters::limit_hits`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::auth::{self, EnrpAuthError, EnrpSecret};
use crate::asap::registrar::{Registrar, RegistrarEvent};
use crate::asap::WallClock;
use crate::handlespace;
use crate::types::{PeId, PoolHandle, RegistrarId};
use crate::wire::enrp::{EnrpBody, EnrpMessage, PoolEntry, UpdateAction};
use crate::wire::{self, SelectionPolicy, WireError, MAX_TABLE_PES};

/// Sequence numbers remembered per peer against replay.
const REPLAY_MEMORY: usize = 4096;

/// ENRP configuration; checked by [`EnrpConfig::validate`].
#[derive(Clone, Debug)]
pub struct EnrpConfig {
    /// This registrar's id (must equal the ASAP registrar's).
    pub id: RegistrarId,
    /// Peer ids known in advance (static configuration); may be empty.
    pub peers: Vec<RegistrarId>,
    /// Whether registrars not in `peers` are accepted (authenticated ones only
    /// when a secret is set).
    pub accept_unknown_peers: bool,
    /// Most peers tracked.
    pub max_peers: usize,
    /// Time between presence messages (RFC: PEER-HEARTBEAT-CYCLE).
    pub presence_interval: Duration,
    /// Silence after which a peer is probed (RFC: MAX-TIME-LAST-HEARD).
    pub max_time_last_heard: Duration,
    /// Time a probed peer has to answer before it is dead (RFC: MAX-TIME-NO-RESPONSE).
    pub max_time_no_response: Duration,
    /// Time to collect INIT_TAKEOVER_ACKs before the attempt is dropped (and retried).
    pub takeover_timeout: Duration,
    /// Time one table request may wait for its response.
    pub table_request_timeout: Duration,
    /// Age of the last table of a live peer's PEs after which its next presence
    /// brings a fresh one although the checksums agree (`None`: only on a
    /// mismatch). The checksum cannot see every drift (module docs).
    pub full_audit_interval: Option<Duration>,
    /// Most PEs this registrar puts into one HANDLE_TABLE_RESPONSE.
    pub table_chunk: usize,
    /// Most PEs accepted in one (multi-piece) table load.
    pub max_table_load: usize,
    /// Most PEs one peer may own in this handlespace.
    pub max_pes_per_peer: usize,
    /// Shared ENRP secrets: the first seals, every one opens. Empty: no authentication.
    pub secrets: Vec<EnrpSecret>,
    /// Accepted distance between a sequence number's time and the local clock.
    pub auth_window: Duration,
}

impl Default for EnrpConfig {
    fn default() -> Self {
        Self {
            id: 1,
            peers: Vec::new(),
            accept_unknown_peers: true,
            max_peers: 64,
            presence_interval: Duration::from_secs(1),
            max_time_last_heard: Duration::from_secs(2),
            max_time_no_response: Duration::from_secs(1),
            takeover_timeout: Duration::from_secs(2),
            table_request_timeout: Duration::from_secs(5),
            full_audit_interval: Some(Duration::from_secs(300)),
            table_chunk: 128,
            max_table_load: 1_000_000,
            max_pes_per_peer: 100_000,
            secrets: Vec::new(),
            auth_window: Duration::from_secs(30),
        }
    }
}

/// An ENRP configuration value that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnrpConfigError {
    /// Id 0 is reserved ("unknown" on the wire).
    #[error("registrar id 0 is reserved")]
    ZeroId,
    /// A duration that must be positive is zero.
    #[error("{0} must be positive")]
    ZeroDuration(&'static str),
    /// Table chunk outside 1..=MAX_TABLE_PES.
    #[error("table_chunk must be in 1..={MAX_TABLE_PES}")]
    TableChunk,
    /// An empty secret.
    #[error("an ENRP secret is empty")]
    EmptySecret,
}

impl EnrpConfig {
    /// Checks the configuration once, at the edge.
    pub fn validate(&self) -> Result<(), EnrpConfigError> {
        if self.id == 0 {
            return Err(EnrpConfigError::ZeroId);
        }
        for (name, d) in [
            ("presence_interval", self.presence_interval),
            ("max_time_last_heard", self.max_time_last_heard),
            ("max_time_no_response", self.max_time_no_response),
            ("takeover_timeout", self.takeover_timeout),
            ("table_request_timeout", self.table_request_timeout),
            ("auth_window", self.auth_window),
            (
                "full_audit_interval",
                self.full_audit_interval.unwrap_or(Duration::MAX),
            ),
        ] {
            if d.is_zero() {
                return Err(EnrpConfigError::ZeroDuration(name));
            }
        }
        if self.table_chunk == 0 || self.table_chunk > MAX_TABLE_PES {
            return Err(EnrpConfigError::TableChunk);
        }
        if self.secrets.iter().any(|s| s.secret.is_empty()) {
            return Err(EnrpConfigError::EmptySecret);
        }
        Ok(())
    }
}

/// Something the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnrpAction {
    /// Send an encoded (and sealed) ENRP message to a registrar (PPID 12).
    Send {
        /// Receiving registrar.
        to: RegistrarId,
        /// Message type code (for counters and logs).
        kind: u8,
        /// The bytes.
        bytes: Vec<u8>,
    },
}

/// Something that happened, for logs and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnrpEvent {
    /// A peer was heard (first time, or again after it was dead).
    PeerUp(RegistrarId),
    /// A peer stopped answering.
    PeerDead(RegistrarId),
    /// This registrar claimed a dead peer's PEs (INIT_TAKEOVER sent).
    TakeoverStarted {
        /// Dead registrar.
        target: RegistrarId,
    },
    /// This registrar became home of a dead peer's PEs.
    TookOver {
        /// Dead registrar.
        target: RegistrarId,
        /// PEs adopted.
        pes: usize,
    },
    /// Another registrar took over a dead peer's PEs.
    PeerTookOver {
        /// Dead registrar.
        target: RegistrarId,
        /// New home.
        by: RegistrarId,
        /// PEs moved in this handlespace.
        pes: usize,
    },
    /// A takeover attempt was dropped (lost to a lower id, target alive, or timeout).
    TakeoverAborted {
        /// Target registrar.
        target: RegistrarId,
    },
    /// A peer's announced checksum differs from this registrar's view of its PEs.
    AuditMismatch {
        /// Peer.
        peer: RegistrarId,
        /// Its announced checksum.
        theirs: u16,
        /// Checksum of its PEs here.
        ours: u16,
    },
    /// A handle table load finished.
    TableLoaded {
        /// From whom.
        peer: RegistrarId,
        /// Only the peer's own PEs (audit) rather than its whole handlespace.
        own_children_only: bool,
        /// PEs received.
        pes: usize,
        /// PEs of the peer removed because the peer no longer has them.
        removed: usize,
    },
    /// A message was refused (authentication, limits, malformed).
    Rejected {
        /// Claimed sender, if it could be read.
        peer: Option<RegistrarId>,
        /// Why.
        reason: EnrpError,
    },
}

/// Why a received ENRP message was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnrpError {
    /// Authentication failed.
    #[error(transparent)]
    Auth(#[from] EnrpAuthError),
    /// Sequence number not newer than the last one, or outside the window.
    #[error("replayed or stale ENRP message")]
    Replay,
    /// The message does not decode.
    #[error("undecodable ENRP message: {0}")]
    Decode(#[from] WireError),
    /// Sender id 0, this registrar's own id, or a receiver id that is not ours.
    #[error("bad server ids (sender {sender}, receiver {receiver})")]
    BadIds {
        /// Sender id.
        sender: RegistrarId,
        /// Receiver id.
        receiver: RegistrarId,
    },
    /// A registrar not configured (and unknown peers are not accepted) or too many peers.
    #[error("registrar {0} is not an accepted peer")]
    UnknownPeer(RegistrarId),
    /// The peer already owns `max_pes_per_peer` PEs here.
    #[error("registrar {0} owns too many PEs")]
    Limit(RegistrarId),
    /// A HANDLE_UPDATE for a PE whose home is not the sender.
    #[error("update for a PE homed at {home} sent by {sender}")]
    NotHome {
        /// Sender.
        sender: RegistrarId,
        /// Home in the element.
        home: RegistrarId,
    },
}

/// Counters for Prometheus; monotonic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnrpCounters {
    /// Messages sent (all types).
    pub messages_sent: u64,
    /// Messages received and accepted.
    pub messages_received: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Presence messages sent.
    pub presences_sent: u64,
    /// Handle updates sent.
    pub updates_sent: u64,
    /// Handle updates applied.
    pub updates_applied: u64,
    /// Table responses sent.
    pub table_responses_sent: u64,
    /// Table loads completed.
    pub table_loads: u64,
    /// Checksum mismatches found by the audit.
    pub audit_mismatches: u64,
    /// Tables asked for because the last one of that peer was `full_audit_interval`
    /// old (the checksums agreed).
    pub full_audits: u64,
    /// Peers declared dead.
    pub peers_dead: u64,
    /// Takeovers this registrar won.
    pub takeovers: u64,
    /// PEs adopted by takeovers.
    pub pes_taken_over: u64,
    /// Authentication failures and replays.
    pub auth_failures: u64,
    /// Messages refused by a limit.
    pub limit_hits: u64,
    /// Other refused or unexpected messages.
    pub rejected: u64,
}

type PeKey = (PoolHandle, PeId);

/// A table load in flight (this registrar asked a peer).
#[derive(Debug)]
struct TableLoad {
    own_children_only: bool,
    deadline: Instant,
    received: BTreeMap<PeKey, wire::PoolElement>,
}

/// A table this registrar serves piece by piece to a peer.
#[derive(Debug)]
struct TableCursor {
    own_children_only: bool,
    keys: Vec<PeKey>,
    pos: usize,
    expires: Instant,
}

#[derive(Debug)]
struct Peer {
    alive: bool,
    last_heard: Option<Instant>,
    probe_sent: Option<Instant>,
    checksum: Option<u16>,
    /// When this peer's own PEs were last asked for (or it was first heard).
    audited_at: Option<Instant>,
    /// Latest authenticated sequence numbers (anti-replay memory).
    seen: BTreeSet<u64>,
    load: Option<TableLoad>,
    serving: Option<TableCursor>,
    /// Earliest time a takeover of this (dead) peer may be (re)tried.
    takeover_after: Option<Instant>,
}

impl Peer {
    fn new() -> Self {
        Self {
            alive: false,
            last_heard: None,
            probe_sent: None,
            checksum: None,
            audited_at: None,
            seen: BTreeSet::new(),
            load: None,
            serving: None,
            takeover_after: None,
        }
    }
}

#[derive(Debug)]
struct Takeover {
    waiting: HashSet<RegistrarId>,
    /// Peers that agreed so far.
    acked: usize,
    deadline: Instant,
}

/// The ENRP server state machine.
#[derive(Debug)]
pub struct EnrpServer {
    config: EnrpConfig,
    clock: WallClock,
    peers: BTreeMap<RegistrarId, Peer>,
    /// Latest wire form of every PE homed here, for DEL updates after removal.
    own: HashMap<PeKey, wire::PoolElement>,
    takeovers: BTreeMap<RegistrarId, Takeover>,
    next_presence: Option<Instant>,
    mentor_loaded: bool,
    sequence: u64,
    actions: VecDeque<EnrpAction>,
    events: VecDeque<EnrpEvent>,
    counters: EnrpCounters,
}

/// A handlespace element in wire form, with its ASAP transport (peers need it).
pub fn element_to_wire(pe: &handlespace::PoolElement) -> Option<wire::PoolElement> {
    Some(wire::PoolElement {
        id: pe.id,
        home_registrar: pe.home,
        registration_life: u32::try_from(pe.registration_life.as_millis()).unwrap_or(u32::MAX),
        user_transport: pe.user_transports.first()?.clone(),
        policy: SelectionPolicy::Known(pe.policy),
        asap_transport: pe.asap_transport.clone(),
    })
}

impl EnrpServer {
    /// A server with the configured peers (none heard yet).
    pub fn new(config: EnrpConfig, clock: WallClock) -> Result<Self, EnrpConfigError> {
        config.validate()?;
        let peers = config
            .peers
            .iter()
            .filter(|&&p| p != config.id && p != 0)
            .map(|&p| (p, Peer::new()))
            .collect();
        Ok(Self {
            config,
            clock,
            peers,
            own: HashMap::new(),
            takeovers: BTreeMap::new(),
            next_presence: None,
            mentor_loaded: false,
            sequence: 0,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            counters: EnrpCounters::default(),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &EnrpConfig {
        &self.config
    }

    /// Counters so far.
    pub fn counters(&self) -> EnrpCounters {
        self.counters
    }

    /// Re-anchors the wall clock (auth sequence numbers).
    pub fn set_wall_clock(&mut self, clock: WallClock) {
        self.clock = clock;
    }

    /// The next action, if any.
    pub fn poll_action(&mut self) -> Option<EnrpAction> {
        self.actions.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<EnrpEvent> {
        self.events.pop_front()
    }

    /// Peers currently considered alive, ascending.
    pub fn live_peers(&self) -> Vec<RegistrarId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.alive)
            .map(|(&id, _)| id)
            .collect()
    }

    /// Whether `peer` is currently considered alive.
    pub fn is_alive(&self, peer: RegistrarId) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.alive)
    }

    /// The checksum `peer` last announced for its own PEs.
    pub fn announced_checksum(&self, peer: RegistrarId) -> Option<u16> {
        self.peers.get(&peer).and_then(|p| p.checksum)
    }

    /// Whether the start-up load from a mentor peer finished.
    pub fn mentor_loaded(&self) -> bool {
        self.mentor_loaded
    }

    /// Whether any table load is in flight.
    pub fn loading(&self) -> bool {
        self.peers.values().any(|p| p.load.is_some())
    }

    /// Starts the machine: presence is due at once.
    pub fn start(&mut self, now: Instant) {
        self.next_presence.get_or_insert(now);
    }

    /// The first message on a new outbound association: presence with the R flag,
    /// addressed to nobody in particular (the peer's id may not be known yet).
    pub fn hello(&mut self, now: Instant, registrar: &Registrar) -> Vec<u8> {
        let msg = self.presence(registrar, 0, true);
        self.counters.presences_sent += 1;
        self.encode(now, &msg).unwrap_or_default()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.next_presence;
        let mut at = |x: Instant| t = Some(t.map_or(x, |y| y.min(x)));
        for p in self.peers.values() {
            if p.alive {
                if let Some(sent) = p.probe_sent {
                    at(sent + self.config.max_time_no_response);
                } else if let Some(h) = p.last_heard {
                    at(h + self.config.max_time_last_heard);
                }
            }
            if let Some(l) = &p.load {
                at(l.deadline);
            }
            if let Some(c) = &p.serving {
                at(c.expires);
            }
            if let Some(a) = p.takeover_after {
                at(a);
            }
        }
        for tk in self.takeovers.values() {
            at(tk.deadline);
        }
        t
    }

    /// Presence, probes, dead peers, takeover and load deadlines due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, registrar: &mut Registrar) {
        if self.next_presence.is_some_and(|t| t <= now) {
            self.next_presence = Some(now + self.config.presence_interval);
            // Dead and never-heard peers get presence too (reply required): the
            // association may have survived a partition that declared both sides
            // dead, and nobody would ever speak first again.
            let all: Vec<(RegistrarId, bool)> =
                self.peers.iter().map(|(&id, p)| (id, p.alive)).collect();
            for (id, alive) in all {
                let msg = self.presence(registrar, id, !alive);
                self.counters.presences_sent += 1;
                self.send(now, id, &msg);
            }
        }
        let ids: Vec<RegistrarId> = self.peers.keys().copied().collect();
        for id in ids {
            let cfg = &self.config;
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            if p.load.as_ref().is_some_and(|l| l.deadline <= now) {
                p.load = None;
                self.counters.rejected += 1;
            }
            if p.serving.as_ref().is_some_and(|c| c.expires <= now) {
                p.serving = None;
            }
            if p.alive {
                match (p.probe_sent, p.last_heard) {
                    (Some(sent), _) if sent + cfg.max_time_no_response <= now => {
                        self.peer_dead(now, id, registrar);
                    }
                    (None, Some(h)) if h + cfg.max_time_last_heard <= now => {
                        p.probe_sent = Some(now);
                        let msg = self.presence(registrar, id, true);
                        self.counters.presences_sent += 1;
                        self.send(now, id, &msg);
                    }
                    _ => {}
                }
            } else if p.takeover_after.is_some_and(|t| t <= now) {
                p.takeover_after = None;
                self.start_takeover(now, id, registrar);
            }
        }
        let due: Vec<RegistrarId> = self
            .takeovers
            .iter()
            .filter(|(_, t)| t.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for target in due {
            self.abort_takeover(now, target, true);
        }
    }

    /// Forwards a change made by the ASAP side to every live peer.
    pub fn handle_registrar_event(
        &mut self,
        now: Instant,
        event: &RegistrarEvent,
        registrar: &Registrar,
    ) {
        match event {
            RegistrarEvent::Registered {
                pool_handle, pe_id, ..
            } => {
                let Some(pe) = registrar.handlespace().get(pool_handle, *pe_id) else {
                    return;
                };
                if pe.home != self.config.id {
                    return;
                }
                let Some(element) = element_to_wire(pe) else {
                    return;
                };
                self.own
                    .insert((pool_handle.clone(), *pe_id), element.clone());
                self.broadcast_update(now, UpdateAction::AddPe, pool_handle, element);
            }
            RegistrarEvent::Removed {
                pool_handle, pe_id, ..
            } => {
                let Some(element) = self.own.remove(&(pool_handle.clone(), *pe_id)) else {
                    return;
                };
                self.broadcast_update(now, UpdateAction::DelPe, pool_handle, element);
            }
            RegistrarEvent::AuthRejected { .. } => {}
        }
    }

    /// Processes one received ENRP message. Returns the (authenticated) sender,
    /// so that the driver can tie the association to that registrar.
    pub fn handle_bytes(
        &mut self,
        now: Instant,
        bytes: &[u8],
        registrar: &mut Registrar,
    ) -> Result<RegistrarId, EnrpError> {
        let r = self.accept(now, bytes);
        let msg = match r {
            Ok(m) => m,
            Err((peer, e)) => {
                match e {
                    EnrpError::Auth(_) | EnrpError::Replay => self.counters.auth_failures += 1,
                    EnrpError::UnknownPeer(_) => self.counters.limit_hits += 1,
                    _ => self.counters.rejected += 1,
                }
                self.events.push_back(EnrpEvent::Rejected {
                    peer,
                    reason: e.clone(),
                });
                return Err(e);
            }
        };
        self.counters.messages_received += 1;
        let from = msg.sender;
        self.heard(now, from, registrar);
        match msg.body {
            EnrpBody::Presence {
                reply_required,
                checksum,
                ..
            } => self.on_presence(now, from, reply_required, checksum, registrar),
            EnrpBody::HandleTableRequest { own_children_only } => {
                self.on_table_request(now, from, own_children_only, registrar)
            }
            EnrpBody::HandleTableResponse {
                reject,
                more_to_send,
                pools,
            } => self.on_table_response(now, from, reject, more_to_send, pools, registrar),
            EnrpBody::HandleUpdate {
                action,
                pool_handle,
                element,
            } => {
                if let Err(e) = self.on_update(now, from, action, &pool_handle, &element, registrar)
                {
                    self.events.push_back(EnrpEvent::Rejected {
                        peer: Some(from),
                        reason: e,
                    });
                }
            }
            EnrpBody::ListRequest => {
                // Peers come from configuration; no server list is handed out.
                let msg = EnrpMessage {
                    sender: self.config.id,
                    receiver: from,
                    body: EnrpBody::ListResponse {
                        reject: true,
                        servers: Vec::new(),
                    },
                };
                self.send(now, from, &msg);
            }
            EnrpBody::InitTakeover { target } => {
                self.on_init_takeover(now, from, target, registrar)
            }
            EnrpBody::InitTakeoverAck { target } => {
                if let Some(t) = self.takeovers.get_mut(&target) {
                    if t.waiting.remove(&from) {
                        t.acked += 1;
                    }
                    if t.waiting.is_empty() {
                        self.complete_takeover(now, target, registrar);
                    }
                }
            }
            EnrpBody::TakeoverServer { target } => {
                if target != self.config.id {
                    self.takeovers.remove(&target);
                    if let Some(p) = self.peers.get_mut(&target) {
                        p.takeover_after = None;
                    }
                    let pes = registrar.take_over(target, from).len();
                    self.events.push_back(EnrpEvent::PeerTookOver {
                        target,
                        by: from,
                        pes,
                    });
                }
            }
            EnrpBody::ListResponse { .. } | EnrpBody::Error(_) => self.counters.rejected += 1,
        }
        Ok(from)
    }

    // ---- receiving ----

    fn accept(
        &mut self,
        now: Instant,
        bytes: &[u8],
    ) -> Result<EnrpMessage, (Option<RegistrarId>, EnrpError)> {
        let claimed = (bytes.len() >= 8)
            .then(|| u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]));
        let sequence = if self.config.secrets.is_empty() {
            None
        } else {
            Some(auth::open(bytes, &self.config.secrets).map_err(|e| (claimed, e.into()))?)
        };
        let msg = EnrpMessage::decode(bytes).map_err(|e| (claimed, e.into()))?;
        let (sender, receiver) = (msg.sender, msg.receiver);
        if sender == 0 || sender == self.config.id || (receiver != 0 && receiver != self.config.id)
        {
            return Err((Some(sender), EnrpError::BadIds { sender, receiver }));
        }
        if !self.peers.contains_key(&sender)
            && (!self.config.accept_unknown_peers || self.peers.len() >= self.config.max_peers)
        {
            return Err((Some(sender), EnrpError::UnknownPeer(sender)));
        }
        if let Some(seq) = sequence {
            let now_ms = self.clock.unix_ms(now);
            let t = auth::sequence_time_ms(seq);
            let window = crate::asap::millis(self.config.auth_window);
            if t.saturating_add(window) < now_ms || t > now_ms.saturating_add(window) {
                return Err((Some(sender), EnrpError::Replay));
            }
            // Messages of one sender may arrive out of order (two associations
            // between a pair of registrars): remember the latest sequence numbers
            // seen rather than only the highest one.
            let seen = &mut self.peers.entry(sender).or_insert_with(Peer::new).seen;
            let too_old = seen.len() >= REPLAY_MEMORY && seen.first().is_some_and(|&f| seq <= f);
            if too_old || !seen.insert(seq) {
                return Err((Some(sender), EnrpError::Replay));
            }
            if seen.len() > REPLAY_MEMORY {
                seen.pop_first();
            }
        }
        Ok(msg)
    }

    fn heard(&mut self, now: Instant, from: RegistrarId, registrar: &Registrar) {
        let p = self.peers.entry(from).or_insert_with(Peer::new);
        p.last_heard = Some(now);
        p.probe_sent = None;
        p.takeover_after = None;
        if !p.alive {
            p.alive = true;
            self.events.push_back(EnrpEvent::PeerUp(from));
            if self.takeovers.remove(&from).is_some() {
                self.events
                    .push_back(EnrpEvent::TakeoverAborted { target: from });
            }
            // A peer (back) up learns our state at once rather than at the next cycle.
            let msg = self.presence(registrar, from, false);
            self.counters.presences_sent += 1;
            self.send(now, from, &msg);
            if !self.mentor_loaded && !self.loading() {
                self.request_table(now, from, false);
            }
        }
    }

    fn on_presence(
        &mut self,
        now: Instant,
        from: RegistrarId,
        reply_required: bool,
        checksum: u16,
        registrar: &Registrar,
    ) {
        if reply_required {
            let msg = self.presence(registrar, from, false);
            self.counters.presences_sent += 1;
            self.send(now, from, &msg);
        }
        let Some(p) = self.peers.get_mut(&from) else {
            return;
        };
        p.checksum = Some(checksum);
        let audited = *p.audited_at.get_or_insert(now);
        let due = self
            .config
            .full_audit_interval
            .is_some_and(|i| now >= audited + i);
        let ours = registrar.handlespace().checksum(from);
        // While any table load runs the view is in flux; audit afterwards.
        if self.loading() {
            return;
        }
        if ours != checksum {
            self.counters.audit_mismatches += 1;
            self.events.push_back(EnrpEvent::AuditMismatch {
                peer: from,
                theirs: checksum,
                ours,
            });
            self.request_table(now, from, true);
        } else if due {
            self.counters.full_audits += 1;
            self.request_table(now, from, true);
        }
    }

    fn request_table(&mut self, now: Instant, to: RegistrarId, own_children_only: bool) {
        let deadline = now + self.config.table_request_timeout;
        let Some(p) = self.peers.get_mut(&to) else {
            return;
        };
        if own_children_only {
            p.audited_at = Some(now);
        }
        p.load = Some(TableLoad {
            own_children_only,
            deadline,
            received: BTreeMap::new(),
        });
        let msg = EnrpMessage {
            sender: self.config.id,
            receiver: to,
            body: EnrpBody::HandleTableRequest { own_children_only },
        };
        self.send(now, to, &msg);
    }

    fn on_table_request(
        &mut self,
        now: Instant,
        from: RegistrarId,
        own_children_only: bool,
        registrar: &Registrar,
    ) {
        let id = self.config.id;
        let expires = now + self.config.table_request_timeout;
        if own_children_only
            && self
                .peers
                .values()
                .any(|p| p.load.as_ref().is_some_and(|l| !l.own_children_only))
        {
            // Still loading from a mentor: our own PEs (adopted from it) are
            // incomplete, and the requester would delete what is missing. It
            // retries at its next audit. (A full table is served anyway: it
            // only ever adds.)
            let msg = EnrpMessage {
                sender: id,
                receiver: from,
                body: EnrpBody::HandleTableResponse {
                    reject: true,
                    more_to_send: false,
                    pools: Vec::new(),
                },
            };
            self.send(now, from, &msg);
            return;
        }
        let Some(p) = self.peers.get_mut(&from) else {
            return;
        };
        let continuing = p
            .serving
            .as_ref()
            .is_some_and(|c| c.own_children_only == own_children_only && c.pos > 0);
        if !continuing {
            let hs = registrar.handlespace();
            let mut keys: Vec<PeKey> = if own_children_only {
                hs.owned_by(id).map(|(h, pe)| (h.clone(), pe.id)).collect()
            } else {
                hs.iter().map(|(h, pe)| (h.clone(), pe.id)).collect()
            };
            keys.sort();
            p.serving = Some(TableCursor {
                own_children_only,
                keys,
                pos: 0,
                expires,
            });
        }
        let Some(mut cursor) = p.serving.take() else {
            return;
        };
        cursor.expires = expires;
        let hs = registrar.handlespace();
        let mut pools: Vec<PoolEntry> = Vec::new();
        let mut n = 0;
        while cursor.pos < cursor.keys.len() && n < self.config.table_chunk {
            let (h, pe_id) = &cursor.keys[cursor.pos];
            cursor.pos += 1;
            let Some(element) = hs.get(h, *pe_id).and_then(element_to_wire) else {
                continue; // removed since the snapshot
            };
            if own_children_only && element.home_registrar != id {
                continue; // moved away since the snapshot
            }
            n += 1;
            match pools.last_mut() {
                Some(pool) if &pool.pool_handle == h => pool.elements.push(element),
                _ => pools.push(PoolEntry {
                    pool_handle: h.clone(),
                    elements: vec![element],
                }),
            }
        }
        let more = cursor.pos < cursor.keys.len();
        if more {
            if let Some(p) = self.peers.get_mut(&from) {
                p.serving = Some(cursor);
            }
        }
        let msg = EnrpMessage {
            sender: id,
            receiver: from,
            body: EnrpBody::HandleTableResponse {
                reject: false,
                more_to_send: more,
                pools,
            },
        };
        self.counters.table_responses_sent += 1;
        self.send(now, from, &msg);
    }

    fn on_table_response(
        &mut self,
        now: Instant,
        from: RegistrarId,
        reject: bool,
        more: bool,
        pools: Vec<PoolEntry>,
        registrar: &mut Registrar,
    ) {
        let max = self.config.max_table_load;
        let Some(p) = self.peers.get_mut(&from) else {
            return;
        };
        let Some(load) = p.load.as_mut() else {
            self.counters.rejected += 1;
            return;
        };
        if reject {
            p.load = None;
            self.counters.rejected += 1;
            return;
        }
        for pool in pools {
            for e in pool.elements {
                if load.own_children_only && e.home_registrar != from {
                    continue;
                }
                load.received.insert((pool.pool_handle.clone(), e.id), e);
            }
        }
        if load.received.len() > max {
            p.load = None;
            self.counters.limit_hits += 1;
            return;
        }
        if more {
            load.deadline = now + self.config.table_request_timeout;
            let own_children_only = load.own_children_only;
            let msg = EnrpMessage {
                sender: self.config.id,
                receiver: from,
                body: EnrpBody::HandleTableRequest { own_children_only },
            };
            self.send(now, from, &msg);
            return;
        }
        let Some(load) = p.load.take() else {
            return;
        };
        for ((h, _), e) in &load.received {
            let home = if load.own_children_only {
                from
            } else {
                e.home_registrar
            };
            if home == 0 {
                continue;
            }
            // A table may hold stale claims (a peer adopted a PE while cut off
            // from us): the registrar the PE itself is registered with wins.
            // Fresh moves arrive as HANDLE_UPDATEs, which are applied.
            if home != self.config.id && registrar.monitors_pe(h, e.id) {
                continue;
            }
            if home != self.config.id
                && registrar.handlespace().owned_count(home) >= self.config.max_pes_per_peer
                && registrar
                    .handlespace()
                    .get(h, e.id)
                    .is_none_or(|pe| pe.home != home)
            {
                self.counters.limit_hits += 1;
                continue;
            }
            match registrar.apply_peer_update(now, h, e, home) {
                Ok(_) => {
                    if home != self.config.id {
                        self.own.remove(&(h.clone(), e.id));
                    } else if let Some(pe) = registrar.handlespace().get(h, e.id) {
                        if let Some(w) = element_to_wire(pe) {
                            self.own.insert((h.clone(), e.id), w);
                        }
                    }
                }
                Err(_) => self.counters.rejected += 1,
            }
        }
        let mut removed = 0;
        if load.own_children_only {
            let stale: Vec<PeKey> = registrar
                .handlespace()
                .owned_by(from)
                .map(|(h, pe)| (h.clone(), pe.id))
                .filter(|k| !load.received.contains_key(k))
                .collect();
            for (h, id) in stale {
                if registrar.apply_peer_removal(&h, id, from) {
                    removed += 1;
                }
            }
        } else {
            self.mentor_loaded = true;
        }
        self.counters.table_loads += 1;
        self.events.push_back(EnrpEvent::TableLoaded {
            peer: from,
            own_children_only: load.own_children_only,
            pes: load.received.len(),
            removed,
        });
    }

    fn on_update(
        &mut self,
        now: Instant,
        from: RegistrarId,
        action: UpdateAction,
        pool_handle: &PoolHandle,
        element: &wire::PoolElement,
        registrar: &mut Registrar,
    ) -> Result<(), EnrpError> {
        match action {
            UpdateAction::AddPe => {
                if element.home_registrar != from {
                    self.counters.rejected += 1;
                    return Err(EnrpError::NotHome {
                        sender: from,
                        home: element.home_registrar,
                    });
                }
                let hs = registrar.handlespace();
                let already_theirs = hs
                    .get(pool_handle, element.id)
                    .is_some_and(|pe| pe.home == from);
                if !already_theirs && hs.owned_count(from) >= self.config.max_pes_per_peer {
                    self.counters.limit_hits += 1;
                    return Err(EnrpError::Limit(from));
                }
                if registrar
                    .apply_peer_update(now, pool_handle, element, from)
                    .is_ok()
                {
                    self.counters.updates_applied += 1;
                    // It moved to the sender: no longer ours to announce.
                    self.own.remove(&(pool_handle.clone(), element.id));
                } else {
                    self.counters.rejected += 1;
                }
            }
            UpdateAction::DelPe => {
                if registrar.apply_peer_removal(pool_handle, element.id, from) {
                    self.counters.updates_applied += 1;
                }
            }
        }
        Ok(())
    }

    // ---- takeover ----

    fn peer_dead(&mut self, now: Instant, id: RegistrarId, registrar: &mut Registrar) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        p.alive = false;
        p.probe_sent = None;
        p.load = None;
        p.serving = None;
        self.counters.peers_dead += 1;
        self.events.push_back(EnrpEvent::PeerDead(id));
        // A dead peer no longer has to acknowledge anything; a claim that lost its
        // quorum with it is dropped and retried later.
        let done: Vec<RegistrarId> = self
            .takeovers
            .iter_mut()
            .filter_map(|(&target, t)| {
                t.waiting.remove(&id);
                t.waiting.is_empty().then_some(target)
            })
            .collect();
        for target in done {
            let scope = self.peers.keys().filter(|&&p| p != target).count() + 1;
            let acked = self.takeovers.get(&target).map_or(0, |t| t.acked);
            if (acked + 1) * 2 > scope {
                self.complete_takeover(now, target, registrar);
            } else {
                self.abort_takeover(now, target, true);
            }
        }
        self.start_takeover(now, id, registrar);
    }

    fn start_takeover(&mut self, now: Instant, target: RegistrarId, registrar: &mut Registrar) {
        if registrar.handlespace().owned_count(target) == 0 || self.takeovers.contains_key(&target)
        {
            return;
        }
        let waiting: HashSet<RegistrarId> = self
            .live_peers()
            .into_iter()
            .filter(|&p| p != target)
            .collect();
        // Quorum: together with the peers that must agree, this registrar needs a
        // majority of the scope (without the target), so an isolated registrar
        // does not take over peers that are alive behind a partition. (With two
        // registrars the survivor alone is a majority of one.)
        let scope = self.peers.keys().filter(|&&p| p != target).count() + 1;
        if (waiting.len() + 1) * 2 <= scope {
            if let Some(p) = self.peers.get_mut(&target) {
                p.takeover_after = Some(now + self.config.takeover_timeout);
            }
            return;
        }
        self.events.push_back(EnrpEvent::TakeoverStarted { target });
        if waiting.is_empty() {
            self.complete_takeover(now, target, registrar);
            return;
        }
        let mut sorted: Vec<RegistrarId> = waiting.iter().copied().collect();
        sorted.sort_unstable();
        self.takeovers.insert(
            target,
            Takeover {
                waiting,
                acked: 0,
                deadline: now + self.config.takeover_timeout,
            },
        );
        for to in sorted {
            let msg = EnrpMessage {
                sender: self.config.id,
                receiver: to,
                body: EnrpBody::InitTakeover { target },
            };
            self.send(now, to, &msg);
        }
    }

    /// Drops an attempt; with `retry`, it may start again after a backoff if the
    /// target stays dead and nobody else announced a takeover.
    fn abort_takeover(&mut self, now: Instant, target: RegistrarId, retry: bool) {
        if self.takeovers.remove(&target).is_none() {
            return;
        }
        self.events.push_back(EnrpEvent::TakeoverAborted { target });
        if retry {
            let after = now + self.config.takeover_timeout;
            if let Some(p) = self.peers.get_mut(&target) {
                if !p.alive {
                    p.takeover_after = Some(after);
                }
            }
        }
    }

    fn on_init_takeover(
        &mut self,
        now: Instant,
        from: RegistrarId,
        target: RegistrarId,
        registrar: &Registrar,
    ) {
        if target == self.config.id {
            // We are alive: tell everybody, which cancels their takeover.
            for id in self.live_peers() {
                let msg = self.presence(registrar, id, false);
                self.counters.presences_sent += 1;
                self.send(now, id, &msg);
            }
            return;
        }
        if self.takeovers.contains_key(&target) {
            if self.config.id < from {
                // Both claim the target: the lower id wins, so we do not agree.
                return;
            }
            self.abort_takeover(now, target, true);
        }
        if let Some(p) = self.peers.get_mut(&target) {
            // We still hear the target: it is not dead, only cut off from the
            // claimant. Agreeing would split its PEs between two homes.
            if p.alive
                && p.last_heard
                    .is_some_and(|h| now < h + self.config.presence_interval * 3 / 2)
            {
                self.counters.rejected += 1;
                return;
            }
            // Give the claimant time to finish before trying ourselves.
            if !p.alive {
                p.takeover_after = Some(now + self.config.takeover_timeout * 2);
            }
        }
        let msg = EnrpMessage {
            sender: self.config.id,
            receiver: from,
            body: EnrpBody::InitTakeoverAck { target },
        };
        self.send(now, from, &msg);
    }

    fn complete_takeover(&mut self, now: Instant, target: RegistrarId, registrar: &mut Registrar) {
        self.takeovers.remove(&target);
        if let Some(p) = self.peers.get_mut(&target) {
            p.takeover_after = None;
        }
        let keys = registrar.take_over(target, self.config.id);
        for key in &keys {
            if let Some(w) = registrar
                .handlespace()
                .get(&key.0, key.1)
                .and_then(element_to_wire)
            {
                self.own.insert(key.clone(), w);
            }
        }
        self.counters.takeovers += 1;
        self.counters.pes_taken_over += keys.len() as u64;
        self.events.push_back(EnrpEvent::TookOver {
            target,
            pes: keys.len(),
        });
        for to in self.live_peers() {
            if to == target {
                continue;
            }
            let msg = EnrpMessage {
                sender: self.config.id,
                receiver: to,
                body: EnrpBody::TakeoverServer { target },
            };
            self.send(now, to, &msg);
        }
    }

    // ---- sending ----

    fn presence(
        &self,
        registrar: &Registrar,
        to: RegistrarId,
        reply_required: bool,
    ) -> EnrpMessage {
        EnrpMessage {
            sender: self.config.id,
            receiver: to,
            body: EnrpBody::Presence {
                reply_required,
                checksum: registrar.handlespace().checksum(self.config.id),
                server_info: None,
            },
        }
    }

    fn broadcast_update(
        &mut self,
        now: Instant,
        action: UpdateAction,
        pool_handle: &PoolHandle,
        element: wire::PoolElement,
    ) {
        let msg = EnrpMessage {
            sender: self.config.id,
            receiver: 0,
            body: EnrpBody::HandleUpdate {
                action,
                pool_handle: pool_handle.clone(),
                element,
            },
        };
        let Some(bytes) = self.encode(now, &msg) else {
            return;
        };
        for to in self.live_peers() {
            self.counters.updates_sent += 1;
            self.push(to, msg.type_code(), bytes.clone());
        }
    }

    fn encode(&mut self, now: Instant, msg: &EnrpMessage) -> Option<Vec<u8>> {
        let mut buf = Vec::with_capacity(128);
        msg.encode(&mut buf).ok()?;
        if let Some(secret) = self.config.secrets.first() {
            let base = self.clock.unix_ms(now) << 16;
            self.sequence = (self.sequence + 1).max(base);
            auth::seal(&mut buf, secret, self.sequence).ok()?;
        }
        Some(buf)
    }

    fn send(&mut self, now: Instant, to: RegistrarId, msg: &EnrpMessage) {
        if let Some(bytes) = self.encode(now, msg) {
            self.push(to, msg.type_code(), bytes);
        }
    }

    fn push(&mut self, to: RegistrarId, kind: u8, bytes: Vec<u8>) {
        self.counters.messages_sent += 1;
        self.counters.bytes_sent += bytes.len() as u64;
        self.actions.push_back(EnrpAction::Send { to, kind, bytes });
    }
}
