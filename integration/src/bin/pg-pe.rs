//! `pg-pe`: a bare ASAP pool element for tests and load tools. It registers with the
//! registrar list, answers endpoint keep-alives, re-registers, and deregisters on
//! SIGTERM/SIGINT. It serves no sessions (that is `poolgate ppe`'s job).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use pool_core::asap::pe::PeConfig;
use pool_core::types::{Policy, PoolHandle, Transport, TransportProtocol, TransportUse};
use poolgate::asap_client::{run_pe, PeCommand, PeStatus};
use poolgate::transport::sctp_udp::SctpUdp;
use poolgate_integration::{parse_policy, transport_for};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(
    about = "A bare ASAP pool element: registers, answers keep-alives, deregisters on SIGTERM"
)]
struct Args {
    /// Registrar UDP addresses (SCTP over UDP), in order of preference.
    #[arg(long, required = true, value_delimiter = ',')]
    registrar: Vec<SocketAddr>,
    /// Pool handle to join.
    #[arg(long)]
    pool: String,
    /// PE identifier (hex or decimal); random if absent.
    #[arg(long)]
    id: Option<String>,
    /// User transport address announced to pool users.
    #[arg(long, default_value = "127.0.0.1:7000")]
    user: SocketAddr,
    /// Policy: rr, wrr:W, random, wrand:W, prio:P, lu:LOAD, lud:LOAD:DEG, plu:LOAD:INC, rlu:LOAD.
    #[arg(long, default_value = "rr")]
    policy: String,
    /// The pool's registration secret (key id 1), for secured pools.
    #[arg(long)]
    secret: Option<String>,
    /// Registration life.
    #[arg(long, default_value = "30s", value_parser = humantime_ms)]
    life: Duration,
}

fn humantime_ms(s: &str) -> Result<Duration, String> {
    poolgate::config::values::parse_duration(s)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let a = Args::parse();
    let policy: Policy = parse_policy(&a.policy).map_err(anyhow::Error::msg)?;
    let handle = PoolHandle::new(a.pool.as_bytes().to_vec())
        .ok_or_else(|| anyhow::anyhow!("bad pool handle"))?;
    let user = Transport {
        protocol: TransportProtocol::Tcp,
        port: a.user.port(),
        transport_use: TransportUse::DataOnly,
        addresses: vec![a.user.ip()],
    };
    let mut cfg = PeConfig::new(handle, user, policy, a.registrar.clone());
    cfg.registration_life = a.life;
    cfg.reregistration_interval = a.life / 3;
    cfg.auth = a
        .secret
        .as_ref()
        .map(|s| pool_core::asap::auth::PoolSecret {
            key_id: 1,
            secret: s.as_bytes().to_vec(),
        });
    if let Some(id) = &a.id {
        let id = id.trim_start_matches("0x");
        cfg.pe_id = Some(u32::from_str_radix(id, 16).or_else(|_| id.parse())?);
    }
    let (transport, _listener) = SctpUdp::bind(transport_for("127.0.0.1:0".parse()?))?;
    let (cmd_tx, cmd_rx) = tokio::sync::mpsc::channel(8);
    let (st_tx, mut st_rx) = tokio::sync::watch::channel(PeStatus::Unregistered);
    let task = tokio::spawn(run_pe(cfg, transport, cmd_rx, st_tx));
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            r = st_rx.changed() => {
                if r.is_err() { break; }
                let s = st_rx.borrow().clone();
                println!("status {s:?}");
            }
        }
    }
    let _ = cmd_tx.send(PeCommand::Shutdown).await;
    let id = tokio::time::timeout(Duration::from_secs(5), task).await???;
    println!("stopped {id:08x}");
    Ok(())
}
