//! `pg-sctp-peer`, the engine's stand-alone test peer: started directly or inside a
//! network namespace, its stdout lines (`<ms> <EVENT> ...`) read as they come.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::process::{bin, Child};

/// A running `pg-sctp-peer` (SIGKILLed on drop) and the lines it printed, each with the
/// instant it was read.
pub struct SctpPeer {
    /// The process (`ip netns exec` execs the peer, so this is the peer in a namespace too).
    pub child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
}

impl SctpPeer {
    /// Starts `pg-sctp-peer <args>`, inside network namespace `netns` when given (via
    /// `ip netns exec`, which needs root); stderr is discarded.
    pub fn start(netns: Option<&str>, args: &[&str]) -> SctpPeer {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin("pg-sctp-peer"));
                c
            }
            None => Command::new(bin("pg-sctp-peer")),
        };
        let mut p = cmd
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pg-sctp-peer");
        let out = p.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        // Drains the pipe to the end so the peer never blocks on it.
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send((Instant::now(), l));
            }
        });
        SctpPeer {
            child: Child(p),
            lines,
        }
    }

    /// Starts `pg-sctp-peer <args> serve` and waits (up to 10 s) for its `LISTEN <addr>`
    /// line, printed once its socket is bound; returns the peer and that address.
    pub fn serve(netns: Option<&str>, args: &[&str]) -> (SctpPeer, SocketAddr) {
        let args: Vec<&str> = args.iter().copied().chain(["serve"]).collect();
        let peer = SctpPeer::start(netns, &args);
        let (_, line) = peer.next_line(Duration::from_secs(10));
        let addr = line
            .split_whitespace()
            .nth(2)
            .filter(|_| line.split_whitespace().nth(1) == Some("LISTEN"))
            .unwrap_or_else(|| panic!("pg-sctp-peer: wanted LISTEN <addr>, got {line}"))
            .parse()
            .unwrap_or_else(|e| panic!("pg-sctp-peer: {line}: {e}"));
        (peer, addr)
    }

    /// The next line and when it was read; panics when none comes within `within`.
    pub fn next_line(&self, within: Duration) -> (Instant, String) {
        self.lines
            .recv_timeout(within)
            .unwrap_or_else(|e| panic!("pg-sctp-peer printed nothing within {within:?}: {e}"))
    }

    /// Sends signal `sig` to the process.
    pub fn signal(&self, sig: i32) {
        self.child.signal(sig);
    }
}
