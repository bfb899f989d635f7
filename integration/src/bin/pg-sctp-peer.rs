//! `pg-sctp-peer`: a process speaking our SCTP over UDP through the real driver, for
//! failure-detection, capture and multi-homing tests.
//!
//! - `serve`: listens (SCTP port 3863), prints `LISTEN <udp addr>`, echoes every message.
//! - `send`: connects to `--connect` (several addresses: multi-homed peer), sends
//!   `--count` numbered messages of `--size` bytes every `--interval-us`, checks that the
//!   echoes come back complete and in order, and prints `DONE sent=.. echoed=..
//!   max_gap_ms=..` (the longest silence between echoes: the switchover time when a path
//!   fails), then shuts down gracefully.
//!
//! Every line of output is flushed at once and starts with milliseconds since start, so
//! tests can time events across processes. Bounded: `--deadline-s` ends the process.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use poolgate::transport::sctp_udp::{SctpUdp, SctpUdpConfig};
use poolgate::transport::{AssocEvent, Message, Transport};

#[derive(Parser)]
#[command(about = "SCTP-over-UDP test peer (echo server or numbered sender)")]
struct Args {
    /// Local UDP address.
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddr,
    /// Local addresses advertised for multi-homing (comma list).
    #[arg(long, value_delimiter = ',')]
    local_addresses: Vec<IpAddr>,
    /// Heartbeat interval, ms.
    #[arg(long, default_value_t = 500)]
    hb_ms: u64,
    /// RTO.Min, ms.
    #[arg(long, default_value_t = 100)]
    rto_min_ms: u64,
    /// RTO.Initial, ms.
    #[arg(long, default_value_t = 200)]
    rto_initial_ms: u64,
    /// RTO.Max, ms.
    #[arg(long, default_value_t = 1000)]
    rto_max_ms: u64,
    /// Association.Max.Retrans.
    #[arg(long, default_value_t = 3)]
    max_rtx: u32,
    /// Path.Max.Retrans.
    #[arg(long, default_value_t = 1)]
    path_max_rtx: u32,
    /// Path MTU (UDP payload).
    #[arg(long, default_value_t = 1472)]
    pmtu: usize,
    /// Send no GSO trains (for packet captures on loopback, which see them unsegmented).
    #[arg(long)]
    no_gso: bool,
    /// The process ends after this many seconds whatever happens.
    #[arg(long, default_value_t = 60)]
    deadline_s: u64,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Echo server.
    Serve,
    /// Numbered sender.
    Send {
        /// Peer addresses (first primary).
        #[arg(long, value_delimiter = ',', required = true)]
        connect: Vec<SocketAddr>,
        /// Messages to send.
        #[arg(long, default_value_t = 1000)]
        count: u64,
        /// Bytes per message (at least 8).
        #[arg(long, default_value_t = 1000)]
        size: usize,
        /// Pause between messages, µs.
        #[arg(long, default_value_t = 1000)]
        interval_us: u64,
    },
}

fn say(t0: Instant, line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{} {line}", t0.elapsed().as_millis());
    let _ = out.flush();
}

fn config(a: &Args) -> SctpUdpConfig {
    let mut c = SctpUdpConfig::new(a.bind);
    c.gso = !a.no_gso;
    let e = &mut c.engine;
    e.listen_ports = vec![3863];
    e.local_addresses = a.local_addresses.clone();
    let s = &mut e.association;
    s.heartbeat_interval = Some(Duration::from_millis(a.hb_ms));
    s.rto_min = Duration::from_millis(a.rto_min_ms);
    s.rto_initial = Duration::from_millis(a.rto_initial_ms);
    s.rto_max = Duration::from_millis(a.rto_max_ms);
    s.max_retransmissions = a.max_rtx;
    s.path_max_retransmissions = a.path_max_rtx;
    s.pmtu = a.pmtu;
    c
}

fn describe(ev: &AssocEvent) -> Option<String> {
    match ev {
        AssocEvent::Message(_) => None,
        AssocEvent::PathUp(a) => Some(format!("PATH_UP {a}")),
        AssocEvent::PathDown(a) => Some(format!("PATH_DOWN {a}")),
        AssocEvent::PrimaryChanged(a) => Some(format!("PRIMARY {a}")),
        AssocEvent::Down(r) => Some(format!("DOWN {}", r.label())),
    }
}

async fn serve(t0: Instant, a: Args) -> anyhow::Result<()> {
    let (t, mut listener) = SctpUdp::bind(config(&a))?;
    say(t0, &format!("LISTEN {}", t.local_addr()));
    while let Some(mut assoc) = listener.accept().await {
        say(t0, &format!("UP {} {}", assoc.id(), assoc.remote()));
        tokio::spawn(async move {
            while let Some(ev) = assoc.recv().await {
                if let Some(d) = describe(&ev) {
                    say(t0, &format!("{} {d}", assoc.id()));
                }
                let m = match ev {
                    AssocEvent::Message(m) => m,
                    AssocEvent::Down(_) => break,
                    _ => continue,
                };
                if assoc.send(m, Duration::from_secs(10)).await.is_err() {
                    break;
                }
            }
        });
    }
    Ok(())
}

async fn send(
    t0: Instant,
    a: &Args,
    connect: &[SocketAddr],
    count: u64,
    size: usize,
    interval: Duration,
) -> anyhow::Result<()> {
    let (t, _l) = SctpUdp::bind(config(a))?;
    let assoc = t.connect(connect, 3863, Duration::from_secs(10)).await?;
    say(
        t0,
        &format!("CONNECTED {} via {}", assoc.id(), t.local_addr()),
    );
    let (tx, mut rx) = assoc.split();
    let size = size.max(8);
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval.max(Duration::from_micros(1)));
        for i in 0..count {
            tick.tick().await;
            let mut v = vec![(i % 251) as u8; size];
            v[..8].copy_from_slice(&i.to_be_bytes());
            if let Err(e) = tx
                .send(Message::new(1, Bytes::from(v)), Duration::from_secs(30))
                .await
            {
                return Err(anyhow::anyhow!("send {i}: {e}"));
            }
        }
        Ok(tx)
    });
    let (mut echoed, mut last, mut max_gap) = (0u64, Instant::now(), Duration::ZERO);
    while echoed < count {
        let Some(ev) = rx.recv().await else {
            anyhow::bail!("association gone after {echoed} echoes");
        };
        if let Some(d) = describe(&ev) {
            say(t0, &d);
        }
        match ev {
            AssocEvent::Message(m) => {
                anyhow::ensure!(
                    m.data.len() == size,
                    "echo {echoed}: {} bytes",
                    m.data.len()
                );
                let n = u64::from_be_bytes(m.data[..8].try_into()?);
                anyhow::ensure!(n == echoed, "echo out of order: got {n}, expected {echoed}");
                anyhow::ensure!(
                    m.data[8..].iter().all(|&b| b == (n % 251) as u8),
                    "echo {n} corrupted"
                );
                max_gap = max_gap.max(last.elapsed());
                last = Instant::now();
                echoed += 1;
            }
            AssocEvent::Down(r) => anyhow::bail!("association down after {echoed} echoes: {r}"),
            _ => {}
        }
    }
    let tx = sender.await??;
    say(
        t0,
        &format!(
            "DONE sent={count} echoed={echoed} max_gap_ms={}",
            max_gap.as_millis()
        ),
    );
    tx.close();
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(ev) = rx.recv().await {
            if let AssocEvent::Down(r) = ev {
                say(t0, &format!("DOWN {}", r.label()));
                break;
            }
        }
    })
    .await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let t0 = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let deadline = Duration::from_secs(args.deadline_s);
    let r = rt.block_on(async {
        let work = async {
            match &args.mode {
                Mode::Serve => serve(t0, args.clone_head()).await,
                Mode::Send {
                    connect,
                    count,
                    size,
                    interval_us,
                } => {
                    send(
                        t0,
                        &args,
                        connect,
                        *count,
                        *size,
                        Duration::from_micros(*interval_us),
                    )
                    .await
                }
            }
        };
        match tokio::time::timeout(deadline, work).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("deadline of {deadline:?} reached")),
        }
    });
    if let Err(e) = &r {
        say(t0, &format!("ERROR {e:#}"));
    }
    r
}

impl Args {
    /// A copy of the settings (the mode is not needed past dispatch).
    fn clone_head(&self) -> Args {
        Args {
            bind: self.bind,
            local_addresses: self.local_addresses.clone(),
            hb_ms: self.hb_ms,
            rto_min_ms: self.rto_min_ms,
            rto_initial_ms: self.rto_initial_ms,
            rto_max_ms: self.rto_max_ms,
            max_rtx: self.max_rtx,
            path_max_rtx: self.path_max_rtx,
            pmtu: self.pmtu,
            no_gso: self.no_gso,
            deadline_s: self.deadline_s,
            mode: Mode::Serve,
        }
    }
}
