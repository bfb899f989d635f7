//! An in-process transport: associations are pairs of channels. For unit tests of the
//! state-machine drivers only; production always runs over [`super::sctp_udp`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::{
    AssocEvent, AssocId, Association, Command, DownReason, Listener, Transport, TransportError,
};

/// Budget and message cap of in-memory associations.
const BUDGET: usize = 1 << 20;

/// A set of in-memory transports that can reach each other by address.
#[derive(Debug, Clone, Default)]
pub struct MemoryNetwork {
    listeners: Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Association>>>>,
    next_id: Arc<Mutex<u64>>,
}

impl MemoryNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    /// A transport at `addr` and its listener.
    pub fn bind(&self, addr: SocketAddr) -> (MemoryTransport, Listener) {
        let (tx, rx) = mpsc::channel(64);
        self.listeners
            .lock()
            .expect("memory network lock")
            .insert(addr, tx);
        (
            MemoryTransport {
                net: self.clone(),
                local: addr,
            },
            Listener::new(rx),
        )
    }

    fn ids(&self) -> (AssocId, AssocId) {
        let mut n = self.next_id.lock().expect("memory network lock");
        *n += 2;
        (AssocId(*n - 1), AssocId(*n))
    }
}

/// One endpoint on a [`MemoryNetwork`].
#[derive(Debug, Clone)]
pub struct MemoryTransport {
    net: MemoryNetwork,
    local: SocketAddr,
}

/// Forwards one side's commands to the other side's events.
async fn pump(
    mut commands: mpsc::UnboundedReceiver<Command>,
    to_peer: mpsc::UnboundedSender<AssocEvent>,
    to_self: mpsc::UnboundedSender<AssocEvent>,
) {
    while let Some(cmd) = commands.recv().await {
        match cmd {
            Command::Send { msg, permit, .. } => {
                drop(permit);
                if to_peer.send(AssocEvent::Message(msg)).is_err() {
                    let _ =
                        to_self.send(AssocEvent::Down(DownReason::PeerAbort("peer gone".into())));
                    return;
                }
            }
            Command::Close { .. } => {
                let _ = to_peer.send(AssocEvent::Down(DownReason::Shutdown));
                let _ = to_self.send(AssocEvent::Down(DownReason::Shutdown));
                return;
            }
            Command::Abort { reason, .. } => {
                let _ = to_peer.send(AssocEvent::Down(DownReason::PeerAbort(reason.clone())));
                let _ = to_self.send(AssocEvent::Down(DownReason::LocalAbort(reason)));
                return;
            }
            // No receive window here: nothing to return.
            Command::Connect { .. } | Command::Credit { .. } => {}
        }
    }
}

impl Transport for MemoryTransport {
    async fn connect(
        &self,
        remotes: &[SocketAddr],
        sctp_port: u16,
        deadline: Duration,
    ) -> Result<Association, TransportError> {
        let remote = *remotes
            .first()
            .ok_or_else(|| TransportError::Refused("no address".into()))?;
        let listener = self
            .net
            .listeners
            .lock()
            .expect("memory network lock")
            .get(&remote)
            .cloned()
            .ok_or(TransportError::Down(DownReason::HandshakeTimeout))?;
        let (id_a, id_b) = self.net.ids();
        let (cmd_a, cmd_a_rx) = mpsc::unbounded_channel();
        let (cmd_b, cmd_b_rx) = mpsc::unbounded_channel();
        let (ev_a, ev_a_rx) = mpsc::unbounded_channel();
        let (ev_b, ev_b_rx) = mpsc::unbounded_channel();
        tokio::spawn(pump(cmd_a_rx, ev_b.clone(), ev_a.clone()));
        tokio::spawn(pump(cmd_b_rx, ev_a, ev_b));
        let mine = Association::new(id_a, remote, 0, cmd_a, ev_a_rx, BUDGET, BUDGET);
        let theirs = Association::new(id_b, self.local, sctp_port, cmd_b, ev_b_rx, BUDGET, BUDGET);
        tokio::time::timeout(deadline, listener.send(theirs))
            .await
            .map_err(|_| TransportError::Timeout(deadline))?
            .map_err(|_| TransportError::Down(DownReason::HandshakeTimeout))?;
        Ok(mine)
    }

    fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{Message, PPID_ASAP};

    #[tokio::test]
    async fn messages_flow_both_ways_and_close_reaches_peer() {
        let net = MemoryNetwork::new();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let (ta, _la) = net.bind(a);
        let (_tb, mut lb) = net.bind(b);
        let mut x = ta
            .connect(&[b], 3863, Duration::from_secs(1))
            .await
            .unwrap();
        let mut y = lb.accept().await.unwrap();
        x.send(
            Message::new(PPID_ASAP, &b"ping"[..]),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        assert_eq!(
            y.recv().await,
            Some(AssocEvent::Message(Message::new(PPID_ASAP, &b"ping"[..])))
        );
        y.send(
            Message::new(PPID_ASAP, &b"pong"[..]),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        assert_eq!(
            x.recv().await,
            Some(AssocEvent::Message(Message::new(PPID_ASAP, &b"pong"[..])))
        );
        x.close();
        assert_eq!(y.recv().await, Some(AssocEvent::Down(DownReason::Shutdown)));
    }

    #[tokio::test]
    async fn connect_to_nobody_fails() {
        let net = MemoryNetwork::new();
        let (ta, _la) = net.bind("127.0.0.1:1".parse().unwrap());
        let r = ta
            .connect(
                &["127.0.0.1:9".parse().unwrap()],
                3863,
                Duration::from_millis(100),
            )
            .await;
        assert!(r.is_err());
    }
}
