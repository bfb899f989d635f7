//! ENRP in the registrar process: associations to the other registrars of the
//! operation scope, driving [`pool_core::enrp::EnrpServer`].
//!
//! * One connector task per configured peer keeps an outbound association to its
//!   ENRP port (reconnecting with exponential backoff, 100 ms up to 2 s) and hands
//!   each new association to the registrar task, which introduces itself with a
//!   presence (R flag).
//! * Associations peers open to our ENRP port are accepted by the registrar's
//!   listener ([`crate::transport::Association::local_sctp_port`] tells them from ASAP).
//! * Every ENRP link gets a reader task (raw messages, PPID 12, to the registrar
//!   task) and a writer task (bounded queue). The first authenticated message on a
//!   link names the registrar at the other end; messages for a registrar go out on
//!   its outbound link when there is one (so one direction keeps one ordered
//!   stream), else on any link it spoke on.
//!
//! The state machine lives in the registrar task next to the ASAP registrar:
//! see `crate::registrar`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use pool_core::asap::PeerId;
use pool_core::enrp::{EnrpConfig, EnrpCounters, EnrpSecret, EnrpServer};
use pool_core::handlespace::Handlespace;
use pool_core::types::RegistrarId;

use crate::config::registrar::RegistrarConfig;
use crate::telemetry::{Counter, Gauge, GaugeVec, Registry};
use crate::transport::{
    AssocEvent, AssocEvents, AssocSender, Association, Message, Transport, PPID_ENRP,
};

/// Messages queued towards one peer registrar before the link counts as stuck: a
/// burst of registrations turns into as many HANDLE_UPDATEs per peer (the queue is
/// allocated in small blocks as it fills).
const WRITER_QUEUE: usize = 65_536;
/// How long a write to a peer may wait for its send budget.
const WRITE_DEADLINE: Duration = Duration::from_secs(2);
/// Time allowed to open an association to a peer.
const CONNECT_DEADLINE: Duration = Duration::from_secs(2);
/// First reconnect delay; doubled per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The ENRP state machine's configuration from the operator's file.
pub fn core_config(cfg: &RegistrarConfig, id: RegistrarId) -> anyhow::Result<EnrpConfig> {
    let e = &cfg.enrp;
    let secrets = if e.resolved_secret.is_empty() {
        Vec::new()
    } else {
        vec![EnrpSecret {
            key_id: 1,
            secret: e.resolved_secret.expose().to_vec(),
        }]
    };
    let core = EnrpConfig {
        id,
        peers: cfg.peers.iter().filter_map(|p| p.id).collect(),
        accept_unknown_peers: true,
        max_peers: (cfg.peers.len() + 8).min(1024),
        presence_interval: e.presence_interval,
        max_time_last_heard: e.max_time_last_heard,
        max_time_no_response: e.max_time_no_response,
        takeover_timeout: e.takeover_timeout,
        full_audit_interval: Some(e.full_audit_interval),
        max_pes_per_peer: e.max_pes_per_peer as usize,
        secrets,
        ..EnrpConfig::default()
    };
    core.validate()?;
    Ok(core)
}

/// What ENRP tasks tell the registrar task.
pub enum EnrpInbound {
    /// A connector opened an association to a configured peer.
    Connected(Association, oneshot::Sender<()>),
    /// A message arrived on a link.
    Message(PeerId, Bytes),
    /// A link went down.
    Closed(PeerId),
}

/// One ENRP association.
struct Link {
    writer: mpsc::Sender<Bytes>,
    /// The registrar at the other end, once it spoke.
    registrar: Option<RegistrarId>,
    outbound: bool,
    /// Tells the connector that its association ended.
    _ended: Option<oneshot::Sender<()>>,
}

/// Reads one counter out of the state machine's counters.
type CounterField = fn(&EnrpCounters) -> u64;

/// Prometheus series of ENRP.
struct Metrics {
    counters: Vec<(Counter, CounterField)>,
    last: EnrpCounters,
    live_peers: Gauge,
    links: Gauge,
    checksum: GaugeVec,
    owned: GaugeVec,
    undeliverable: Counter,
}

impl Metrics {
    fn new(r: &Registry) -> anyhow::Result<Self> {
        type Field = fn(&EnrpCounters) -> u64;
        let defs: [(&str, &str, Field); 16] = [
            ("messages_sent", "ENRP messages sent", |c| c.messages_sent),
            (
                "messages_received",
                "ENRP messages received and accepted",
                |c| c.messages_received,
            ),
            ("bytes_sent", "ENRP bytes sent", |c| c.bytes_sent),
            ("presences_sent", "ENRP presence messages sent", |c| {
                c.presences_sent
            }),
            ("updates_sent", "ENRP handle updates sent", |c| {
                c.updates_sent
            }),
            ("updates_applied", "ENRP handle updates applied", |c| {
                c.updates_applied
            }),
            (
                "table_responses_sent",
                "ENRP handle table responses sent",
                |c| c.table_responses_sent,
            ),
            ("table_loads", "ENRP handle table loads completed", |c| {
                c.table_loads
            }),
            (
                "audit_mismatches",
                "Peer checksums that differed from our view",
                |c| c.audit_mismatches,
            ),
            (
                "full_audits",
                "Peer tables asked for because the last one was full_audit_interval old",
                |c| c.full_audits,
            ),
            ("peers_dead", "Peers declared dead", |c| c.peers_dead),
            ("takeovers", "Takeovers of dead peers won", |c| c.takeovers),
            ("pes_taken_over", "PEs adopted by takeovers", |c| {
                c.pes_taken_over
            }),
            (
                "auth_failures",
                "ENRP messages failing authentication or replayed",
                |c| c.auth_failures,
            ),
            ("limit_hits", "ENRP messages refused by a limit", |c| {
                c.limit_hits
            }),
            ("rejected", "ENRP messages refused or unexpected", |c| {
                c.rejected
            }),
        ];
        let mut counters = Vec::new();
        for (name, help, f) in defs {
            counters.push((
                r.counter(&format!("poolgate_registrar_enrp_{name}_total"), help)?,
                f,
            ));
        }
        Ok(Metrics {
            counters,
            last: EnrpCounters::default(),
            live_peers: r.gauge("poolgate_registrar_enrp_live_peers", "Peer registrars alive")?,
            links: r.gauge("poolgate_registrar_enrp_associations", "Open ENRP associations")?,
            checksum: r.gauge_vec(
                "poolgate_registrar_enrp_checksum",
                "Handlespace checksum (RFC 5353) of the PEs each registrar is home of, in this registrar's view",
                &["registrar"],
            )?,
            owned: r.gauge_vec(
                "poolgate_registrar_enrp_owned_pes",
                "PEs each registrar is home of, in this registrar's view",
                &["registrar"],
            )?,
            undeliverable: r.counter(
                "poolgate_registrar_enrp_undeliverable_total",
                "ENRP messages dropped: no association to the registrar, or its queue was full",
            )?,
        })
    }
}

/// The registrar task's ENRP side: the state machine and its links.
pub struct EnrpDriver {
    /// The state machine.
    pub server: EnrpServer,
    links: HashMap<PeerId, Link>,
    routes: HashMap<RegistrarId, PeerId>,
    metrics: Metrics,
    known: Vec<RegistrarId>,
}

impl EnrpDriver {
    /// A driver around `server`, with its metrics registered.
    pub fn new(server: EnrpServer, registry: &Registry) -> anyhow::Result<Self> {
        let id = server.config().id;
        let mut known = server.config().peers.clone();
        known.push(id);
        Ok(Self {
            server,
            links: HashMap::new(),
            routes: HashMap::new(),
            metrics: Metrics::new(registry)?,
            known,
        })
    }

    /// Starts one connector task per configured peer.
    pub fn spawn_connectors<T: Transport>(
        cfg: &RegistrarConfig,
        transport: &T,
        inbound: mpsc::Sender<EnrpInbound>,
    ) {
        for peer in &cfg.peers {
            let addrs: Vec<SocketAddr> = peer.addresses.iter().map(|a| a.0).collect();
            tokio::spawn(connector(
                transport.clone(),
                addrs,
                cfg.enrp_sctp_port,
                inbound.clone(),
            ));
        }
    }

    /// A new ENRP association: `outbound` ones get our hello at once.
    pub fn attach(
        &mut self,
        assoc: Association,
        outbound: Option<oneshot::Sender<()>>,
        hello: Option<Vec<u8>>,
        inbound: mpsc::Sender<EnrpInbound>,
    ) {
        let link: PeerId = assoc.id().0;
        let remote = assoc.remote();
        tracing::debug!(link, %remote, outbound = outbound.is_some(), "ENRP association up");
        let (sender, events) = assoc.split();
        let (w_tx, w_rx) = mpsc::channel(WRITER_QUEUE);
        if let Some(h) = hello {
            let _ = w_tx.try_send(Bytes::from(h));
        }
        self.links.insert(
            link,
            Link {
                writer: w_tx,
                registrar: None,
                outbound: outbound.is_some(),
                _ended: outbound,
            },
        );
        tokio::spawn(write_loop(sender, w_rx));
        tokio::spawn(read_loop(link, events, inbound));
    }

    /// The registrar at the other end of `link` spoke: route to it over this link
    /// unless it already has an outbound one.
    pub fn learned(&mut self, link: PeerId, registrar: RegistrarId) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if l.registrar == Some(registrar) {
            return;
        }
        l.registrar = Some(registrar);
        let outbound = l.outbound;
        let keep = self
            .routes
            .get(&registrar)
            .and_then(|r| self.links.get(r))
            .is_some_and(|cur| cur.outbound && !outbound);
        if !keep {
            self.routes.insert(registrar, link);
        }
        if !self.known.contains(&registrar) {
            self.known.push(registrar);
        }
    }

    /// A link ended: forget it, and route its registrar over another link if any.
    pub fn closed(&mut self, link: PeerId) {
        let Some(l) = self.links.remove(&link) else {
            return;
        };
        if let Some(r) = l.registrar {
            if self.routes.get(&r) == Some(&link) {
                self.routes.remove(&r);
                let other = self
                    .links
                    .iter()
                    .filter(|(_, x)| x.registrar == Some(r))
                    .max_by_key(|(_, x)| x.outbound)
                    .map(|(&id, _)| id);
                if let Some(o) = other {
                    self.routes.insert(r, o);
                }
            }
        }
    }

    /// Sends a message to a registrar; counts it when it cannot be delivered.
    pub fn send(&mut self, to: RegistrarId, bytes: Vec<u8>) {
        let Some(link) = self.routes.get(&to).copied() else {
            self.metrics.undeliverable.inc();
            return;
        };
        let Some(l) = self.links.get(&link) else {
            self.metrics.undeliverable.inc();
            return;
        };
        if l.writer.try_send(Bytes::from(bytes)).is_err() {
            self.metrics.undeliverable.inc();
            tracing::warn!(
                registrar = to,
                link,
                "ENRP peer does not drain its queue; closing"
            );
            self.closed(link);
        }
    }

    /// Refreshes the metrics from the state machine and the handlespace.
    pub fn update_metrics(&mut self, hs: &Handlespace) {
        let now = self.server.counters();
        for (c, f) in &self.metrics.counters {
            c.inc_by(f(&now).saturating_sub(f(&self.metrics.last)));
        }
        self.metrics.last = now;
        self.metrics
            .live_peers
            .set(self.server.live_peers().len() as f64);
        self.metrics.links.set(self.links.len() as f64);
        for r in hs.registrars() {
            if !self.known.contains(&r) {
                self.known.push(r);
            }
        }
        for &r in &self.known {
            let label = r.to_string();
            if let Ok(g) = self.metrics.checksum.with(&[&label]) {
                g.set(f64::from(hs.checksum(r)));
            }
            if let Ok(g) = self.metrics.owned.with(&[&label]) {
                g.set(hs.owned_count(r) as f64);
            }
        }
    }
}

/// Keeps an association to one configured peer open.
async fn connector<T: Transport>(
    transport: T,
    addrs: Vec<SocketAddr>,
    port: u16,
    inbound: mpsc::Sender<EnrpInbound>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        match transport.connect(&addrs, port, CONNECT_DEADLINE).await {
            Ok(assoc) => {
                backoff = MIN_BACKOFF;
                let (tx, rx) = oneshot::channel();
                if inbound
                    .send(EnrpInbound::Connected(assoc, tx))
                    .await
                    .is_err()
                {
                    return;
                }
                // Wait until the registrar task drops the link.
                let _ = rx.await;
            }
            Err(e) => {
                tracing::debug!(peer = ?addrs, error = %e, "ENRP peer unreachable");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn write_loop(sender: AssocSender, mut queue: mpsc::Receiver<Bytes>) {
    while let Some(bytes) = queue.recv().await {
        if sender
            .send(Message::new(PPID_ENRP, bytes), WRITE_DEADLINE)
            .await
            .is_err()
        {
            break;
        }
    }
    sender.abort("registrar closed the ENRP association");
}

async fn read_loop(link: PeerId, mut events: AssocEvents, inbound: mpsc::Sender<EnrpInbound>) {
    while let Some(ev) = events.recv().await {
        match ev {
            AssocEvent::Message(m) if m.ppid == PPID_ENRP => {
                if inbound
                    .send(EnrpInbound::Message(link, m.data))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            AssocEvent::Message(m) => {
                tracing::debug!(
                    link,
                    ppid = m.ppid,
                    "non-ENRP message on an ENRP association ignored"
                );
            }
            AssocEvent::Down(reason) => {
                tracing::debug!(link, %reason, "ENRP association down");
                break;
            }
            AssocEvent::PathUp(_) | AssocEvent::PathDown(_) | AssocEvent::PrimaryChanged(_) => {}
        }
    }
    let _ = inbound.send(EnrpInbound::Closed(link)).await;
}
