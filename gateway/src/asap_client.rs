//! Tokio drivers for the ASAP endpoint state machines: the PE side (registration,
//! re-registration, keep-alive answers, server hunt, deregistration) and the PU side
//! (handle resolution with a cache, failure reports).
//!
//! Both own one association to the current registrar at a time; the state machines
//! decide when to connect, what to send and when to give up on a registrar.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::Bytes;
use rand::SeedableRng;
use tokio::sync::{mpsc, watch};

use pool_core::asap::pe::{PeAction, PeConfig, PeEvent, PoolElementClient};
use pool_core::asap::pu::{PoolUserClient, PuAction, PuConfig, PuEvent, Resolve};
use pool_core::asap::WallClock;
use pool_core::types::{Load, PeId, Policy, PoolHandle};
use pool_core::wire::{AsapMessage, PoolElement};

use crate::transport::{AssocEvent, Association, Message, Transport, PPID_ASAP, SCTP_PORT_ASAP};

/// Time allowed to open an association to a registrar.
const CONNECT_DEADLINE: Duration = Duration::from_secs(2);
/// Time allowed to queue one control message.
const SEND_DEADLINE: Duration = Duration::from_secs(2);

fn wall_clock() -> WallClock {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    WallClock::new(Instant::now(), unix_ms)
}

fn encode(msg: &AsapMessage) -> Option<Bytes> {
    let mut buf = Vec::with_capacity(256);
    match msg.encode(&mut buf) {
        Ok(()) => Some(Bytes::from(buf)),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode ASAP message");
            None
        }
    }
}

async fn next_asap(assoc: &mut Option<Association>) -> Result<AsapMessage, ()> {
    let Some(a) = assoc.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        match a.recv().await {
            Some(AssocEvent::Message(m)) if m.ppid == PPID_ASAP => {
                match AsapMessage::decode(&m.data) {
                    Ok(msg) => return Ok(msg),
                    Err(e) => {
                        tracing::debug!(error = %e, "undecodable ASAP message from registrar")
                    }
                }
            }
            Some(AssocEvent::Down(reason)) => {
                tracing::debug!(%reason, "registrar association down");
                return Err(());
            }
            None => return Err(()),
            Some(_) => {}
        }
    }
}

fn sleep_until(t: Option<Instant>) -> tokio::time::Sleep {
    tokio::time::sleep_until(
        t.map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600)),
    )
}

/// Commands to a running PE registration.
#[derive(Debug)]
pub enum PeCommand {
    /// The PE's load changed (for adaptive policies).
    Load(Load),
    /// The operator changed the policy or its parameters (reload); re-registers at once.
    Policy(Policy),
    /// Deregister and stop.
    Shutdown,
}

/// What a running PE registration reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeStatus {
    /// Not registered (yet, or any more).
    Unregistered,
    /// Registered with the registrar at this index of the list.
    Registered(usize),
    /// Stopped (after shutdown).
    Stopped,
}

/// Runs a PE's registration until [`PeCommand::Shutdown`] (or the command channel
/// closes), reporting its status on `status`.
pub async fn run_pe<T: Transport>(
    config: PeConfig,
    transport: T,
    mut commands: mpsc::Receiver<PeCommand>,
    status: watch::Sender<PeStatus>,
) -> anyhow::Result<PeId> {
    let rng = Box::new(rand_chacha::ChaCha8Rng::from_os_rng());
    let mut pe = PoolElementClient::new(config, wall_clock(), rng).context("PE configuration")?;
    let id = pe.pe_id();
    let mut assoc: Option<Association> = None;
    let mut stopping = false;
    pe.start(Instant::now());
    loop {
        // Carry out what the state machine asked for.
        while let Some(action) = pe.poll_action() {
            match action {
                PeAction::Connect { registrar, addr } => {
                    assoc = None;
                    match transport
                        .connect(&[addr], SCTP_PORT_ASAP, CONNECT_DEADLINE)
                        .await
                    {
                        Ok(a) => {
                            tracing::debug!(registrar, %addr, "connected to registrar");
                            assoc = Some(a);
                        }
                        Err(e) => {
                            tracing::warn!(registrar, %addr, error = %e, "registrar unreachable");
                            pe.handle_registrar_closed(Instant::now());
                        }
                    }
                }
                PeAction::Send(msg) => {
                    let (Some(a), Some(bytes)) = (assoc.as_ref(), encode(&msg)) else {
                        continue;
                    };
                    if a.send(Message::new(PPID_ASAP, bytes), SEND_DEADLINE)
                        .await
                        .is_err()
                    {
                        assoc = None;
                        pe.handle_registrar_closed(Instant::now());
                    }
                }
                PeAction::Close => {
                    if let Some(a) = assoc.take() {
                        a.close();
                    }
                }
            }
        }
        while let Some(ev) = pe.poll_event() {
            match ev {
                PeEvent::Registered { registrar } => {
                    tracing::info!(pe = format_args!("{id:08x}"), registrar, "registered");
                    let _ = status.send(PeStatus::Registered(registrar));
                }
                PeEvent::RegistrationRejected { registrar, cause } => {
                    tracing::warn!(
                        pe = format_args!("{id:08x}"),
                        registrar,
                        ?cause,
                        "registration rejected"
                    );
                    let _ = status.send(PeStatus::Unregistered);
                }
                PeEvent::RegistrarLost { registrar } => {
                    tracing::warn!(
                        pe = format_args!("{id:08x}"),
                        registrar,
                        "registrar lost; hunting"
                    );
                    let _ = status.send(PeStatus::Unregistered);
                }
                PeEvent::Deregistered { acknowledged } => {
                    tracing::info!(pe = format_args!("{id:08x}"), acknowledged, "deregistered");
                    let _ = status.send(PeStatus::Stopped);
                    if let Some(a) = assoc.take() {
                        a.close();
                    }
                    return Ok(id);
                }
            }
        }
        let timer = sleep_until(pe.poll_timeout());
        tokio::select! {
            msg = next_asap(&mut assoc) => match msg {
                Ok(m) => pe.handle_message(Instant::now(), m),
                Err(()) => {
                    assoc = None;
                    pe.handle_registrar_closed(Instant::now());
                }
            },
            _ = timer => pe.handle_timeout(Instant::now()),
            cmd = commands.recv(), if !stopping => match cmd {
                Some(PeCommand::Load(l)) => pe.set_load(Instant::now(), l),
                Some(PeCommand::Policy(p)) => pe.set_policy(Instant::now(), p),
                Some(PeCommand::Shutdown) | None => {
                    stopping = true;
                    pe.shutdown(Instant::now());
                }
            },
        }
    }
}

/// A pool user's view of the registrars: resolves pool handles (cached) and reports
/// unreachable PEs.
pub struct PoolUser<T: Transport> {
    pu: PoolUserClient,
    transport: T,
    assoc: Option<Association>,
}

impl<T: Transport> PoolUser<T> {
    /// A pool user that asks the registrars in `config`.
    pub fn new(config: PuConfig, transport: T) -> anyhow::Result<Self> {
        let rng = Box::new(rand_chacha::ChaCha8Rng::from_os_rng());
        let pu = PoolUserClient::new(config, rng).context("PU configuration")?;
        Ok(PoolUser {
            pu,
            transport,
            assoc: None,
        })
    }

    /// The PEs of `handle` (fresh from the cache or from a registrar), at most `deadline`.
    pub async fn resolve(
        &mut self,
        handle: &PoolHandle,
        deadline: Duration,
    ) -> anyhow::Result<Vec<PoolElement>> {
        let until = tokio::time::Instant::now() + deadline;
        if self.pu.resolve(Instant::now(), handle) == Resolve::Cached {
            return Ok(self.pu.cached(handle).cloned().collect());
        }
        loop {
            self.act().await;
            while let Some(ev) = self.pu.poll_event() {
                match ev {
                    PuEvent::Resolved { pool_handle, .. } if &pool_handle == handle => {
                        return Ok(self.pu.cached(handle).cloned().collect());
                    }
                    PuEvent::ResolutionFailed { pool_handle, error } if &pool_handle == handle => {
                        anyhow::bail!("resolution of {handle} failed: {error:?}");
                    }
                    PuEvent::RegistrarLost { registrar } => {
                        tracing::warn!(registrar, "registrar lost; hunting")
                    }
                    _ => {}
                }
            }
            let timer = sleep_until(self.pu.poll_timeout());
            tokio::select! {
                msg = next_asap(&mut self.assoc) => match msg {
                    Ok(m) => self.pu.handle_message(Instant::now(), m),
                    Err(()) => {
                        self.assoc = None;
                        self.pu.handle_registrar_closed(Instant::now());
                    }
                },
                _ = timer => self.pu.handle_timeout(Instant::now()),
                _ = tokio::time::sleep_until(until) => anyhow::bail!("resolution of {handle} timed out after {deadline:?}"),
            }
        }
    }

    /// Picks one PE of `handle` by the pool's policy from the cache (resolving first).
    pub async fn select(
        &mut self,
        handle: &PoolHandle,
        deadline: Duration,
    ) -> anyhow::Result<PoolElement> {
        self.resolve(handle, deadline).await?;
        self.pu
            .select(Instant::now(), handle)
            .context("pool has no elements")
    }

    /// Reports a PE unreachable (ENDPOINT_UNREACHABLE) and drops it from the cache.
    pub async fn report_failure(&mut self, handle: &PoolHandle, pe: PeId) {
        self.pu.report_failure(handle, pe);
        self.act().await;
    }

    /// Closes the registrar association gracefully (waiting up to `wait` for the
    /// shutdown to complete), so the registrar frees it at once.
    pub async fn close(mut self, wait: Duration) {
        if let Some(mut a) = self.assoc.take() {
            a.close();
            let _ = tokio::time::timeout(wait, async {
                while let Some(ev) = a.recv().await {
                    if matches!(ev, AssocEvent::Down(_)) {
                        break;
                    }
                }
            })
            .await;
        }
    }

    /// Forgets the cached resolution of `handle`.
    pub fn invalidate(&mut self, handle: &PoolHandle) {
        self.pu.invalidate(handle);
    }

    async fn act(&mut self) {
        while let Some(action) = self.pu.poll_action() {
            match action {
                PuAction::Connect { registrar, addr } => self.connect(registrar, addr).await,
                PuAction::Send(msg) => {
                    let (Some(a), Some(bytes)) = (self.assoc.as_ref(), encode(&msg)) else {
                        continue;
                    };
                    if a.send(Message::new(PPID_ASAP, bytes), SEND_DEADLINE)
                        .await
                        .is_err()
                    {
                        self.assoc = None;
                        self.pu.handle_registrar_closed(Instant::now());
                    }
                }
                PuAction::Close => {
                    if let Some(a) = self.assoc.take() {
                        a.close();
                    }
                }
            }
        }
    }

    async fn connect(&mut self, registrar: usize, addr: SocketAddr) {
        self.assoc = None;
        match self
            .transport
            .connect(&[addr], SCTP_PORT_ASAP, CONNECT_DEADLINE)
            .await
        {
            Ok(a) => self.assoc = Some(a),
            Err(e) => {
                tracing::warn!(registrar, %addr, error = %e, "registrar unreachable");
                self.pu.handle_registrar_closed(Instant::now());
            }
        }
    }
}

/// Listens on `listen` (a unicast address, or a multicast group joined on all
/// interfaces) for ASAP_SERVER_ANNOUNCE for up to `wait`, and returns the registrars
/// heard: id and the UDP address of their SCTP-over-UDP endpoint.
pub async fn discover_registrars(
    listen: SocketAddr,
    wait: Duration,
) -> anyhow::Result<Vec<(u32, SocketAddr)>> {
    let bind: SocketAddr = if listen.ip().is_multicast() {
        SocketAddr::new(
            if listen.is_ipv4() {
                [0, 0, 0, 0].into()
            } else {
                [0u16; 8].into()
            },
            listen.port(),
        )
    } else {
        listen
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .with_context(|| format!("listening for server announcements on {bind}"))?;
    if let std::net::IpAddr::V4(group) = listen.ip() {
        if group.is_multicast() {
            socket.join_multicast_v4(group, std::net::Ipv4Addr::UNSPECIFIED)?;
        }
    }
    let until = tokio::time::Instant::now() + wait;
    let mut found: Vec<(u32, SocketAddr)> = Vec::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let recv = tokio::time::timeout_at(until, socket.recv_from(&mut buf)).await;
        let Ok(Ok((n, from))) = recv else { break };
        let Ok(AsapMessage::ServerAnnounce {
            server_id,
            transports,
        }) = AsapMessage::decode(&buf[..n])
        else {
            tracing::debug!(%from, "datagram on the announce address is no server announce");
            continue;
        };
        // Our registrars put their UDP encapsulation address in a UDP transport
        // parameter; a registrar that announces only SCTP is reached at the source
        // address on the standard encapsulation port.
        let addr = transports
            .iter()
            .find(|t| t.protocol == pool_core::types::TransportProtocol::Udp)
            .and_then(|t| t.addresses.first().map(|ip| SocketAddr::new(*ip, t.port)))
            .unwrap_or_else(|| {
                SocketAddr::new(from.ip(), crate::transport::UDP_ENCAPSULATION_PORT)
            });
        if !found.iter().any(|(id, a)| *id == server_id && *a == addr) {
            found.push((server_id, addr));
        }
        if !found.is_empty() && tokio::time::Instant::now() + Duration::from_millis(50) >= until {
            break;
        }
    }
    Ok(found)
}
