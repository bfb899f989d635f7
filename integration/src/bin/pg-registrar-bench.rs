//! `pg-registrar-bench`: load a real `poolgate registrar` process over SCTP/UDP on
//! loopback and report registrations/s, handle resolutions/s from concurrent pool
//! users, and the registrar's memory per PE. Bounded in count and time; stops by itself.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use pool_core::asap::pe::PeConfig;
use pool_core::asap::pu::PuConfig;
use pool_core::types::{Policy, PoolHandle, Transport, TransportProtocol, TransportUse};
use poolgate::asap_client::{run_pe, PeCommand, PeStatus, PoolUser};
use poolgate::transport::sctp_udp::SctpUdp;
use poolgate_integration::{bin, free_tcp_port, free_udp_port, transport_for, Child};
use tokio::sync::{mpsc, watch};

#[derive(Parser)]
#[command(about = "Benchmark a real registrar: registrations/s, resolutions/s, memory per PE")]
struct Args {
    /// PEs to register.
    #[arg(long, default_value_t = 10_000)]
    pes: usize,
    /// Pools the PEs are spread over.
    #[arg(long, default_value_t = 100)]
    pools: usize,
    /// Concurrent pool users resolving.
    #[arg(long, default_value_t = 8)]
    pus: usize,
    /// Seconds of resolving.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let port = free_udp_port();
    let dir = std::env::temp_dir().join(format!("pg-regbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("registrar.toml");
    let mut f = std::fs::File::create(&cfg)?;
    writeln!(
        f,
        "[registrar]\nid = 7\nlisten = [\"127.0.0.1:{port}\"]\n[registrar.keepalive]\ninterval = \"5s\"\ntimeout = \"5s\"\n\
         [registrar.limits]\nmax_pools = {}\nmax_pes_per_pool = {}\nmax_associations_per_peer = 1000000\n\
         [registrar.metrics]\nlisten = \"127.0.0.1:{}\"",
        a.pools + 10,
        a.pes + 10,
        free_tcp_port()
    )?;
    let reg = Child(
        Command::new(bin("poolgate"))
            .args(["--log-level", "warn", "registrar", "--config"])
            .arg(&cfg)
            .stderr(Stdio::inherit())
            .spawn()?,
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = reg.0.id();
    let rss0 = rss_kib(pid);
    let addr = format!("127.0.0.1:{port}").parse()?;

    // Registrations: all PEs at once, each its own association (as real PEs have).
    let (pe_transport, _l) = SctpUdp::bind({
        let mut t = transport_for("127.0.0.1:0".parse()?);
        t.engine.max_associations = a.pes + 1000;
        t
    })?;
    let t0 = Instant::now();
    let mut stops = Vec::with_capacity(a.pes);
    let mut statuses = Vec::with_capacity(a.pes);
    for i in 0..a.pes {
        let handle = PoolHandle::new(format!("pool-{}", i % a.pools).into_bytes()).unwrap();
        let user = Transport {
            protocol: TransportProtocol::Tcp,
            port: 7000,
            transport_use: TransportUse::DataOnly,
            addresses: vec!["127.0.0.1".parse()?],
        };
        let mut c = PeConfig::new(handle, user, Policy::LeastUsed { load: 0 }, vec![addr]);
        c.pe_id = Some(i as u32 + 1);
        c.registration_life = Duration::from_secs(300);
        c.reregistration_interval = Duration::from_secs(100);
        c.response_timeout = Duration::from_secs(30);
        let (tx, rx) = mpsc::channel(1);
        let (st_tx, st_rx) = watch::channel(PeStatus::Unregistered);
        tokio::spawn(run_pe(c, pe_transport.clone(), rx, st_tx));
        stops.push(tx);
        statuses.push(st_rx);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for st in &mut statuses {
        while !matches!(*st.borrow(), PeStatus::Registered(_)) {
            if Instant::now() > deadline {
                anyhow::bail!("not all PEs registered within 120 s");
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), st.changed()).await;
        }
    }
    let reg_time = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss1 = rss_kib(pid);

    // Resolutions: concurrent PUs, no cache, for a fixed time.
    let stop_at = Instant::now() + Duration::from_secs(a.seconds);
    let mut tasks = Vec::new();
    for p in 0..a.pus {
        let (t, _l) = SctpUdp::bind(transport_for("127.0.0.1:0".parse()?))?;
        let mut cfg = PuConfig::new(vec![addr]);
        cfg.cache_staleness = Duration::ZERO;
        let pools = a.pools;
        tasks.push(tokio::spawn(async move {
            let mut pu = PoolUser::new(cfg, t).expect("pu");
            let mut n = 0u64;
            let mut i = p;
            while Instant::now() < stop_at {
                let h = PoolHandle::new(format!("pool-{}", i % pools).into_bytes()).unwrap();
                pu.invalidate(&h);
                if pu.resolve(&h, Duration::from_secs(5)).await.is_ok() {
                    n += 1;
                }
                i += 1;
            }
            n
        }));
    }
    let mut resolutions = 0;
    for t in tasks {
        resolutions += t.await?;
    }
    for s in stops {
        let _ = s.send(PeCommand::Shutdown).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| PEs registered | {} in {} pools |", a.pes, a.pools);
    println!("| registration time | {:.2} s |", reg_time.as_secs_f64());
    println!(
        "| registrations/s | {:.0} |",
        a.pes as f64 / reg_time.as_secs_f64()
    );
    println!(
        "| handle resolutions/s ({} concurrent PUs, {} s) | {:.0} |",
        a.pus,
        a.seconds,
        resolutions as f64 / a.seconds as f64
    );
    println!(
        "| registrar RSS empty / loaded | {} KiB / {} KiB |",
        rss0, rss1
    );
    println!(
        "| registrar memory per PE (incl. its association) | {:.0} bytes |",
        (rss1.saturating_sub(rss0)) as f64 * 1024.0 / a.pes as f64
    );
    Ok(())
}
