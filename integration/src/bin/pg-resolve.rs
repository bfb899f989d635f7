//! `pg-resolve`: resolves a pool handle through the registrars and prints the PEs,
//! one line each (`<id hex> <home hex> <policy>`), or JSON with `--json`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use pool_core::asap::pu::PuConfig;
use pool_core::types::PoolHandle;
use poolgate::asap_client::PoolUser;
use poolgate::transport::sctp_udp::SctpUdp;
use poolgate_integration::transport_for;

#[derive(Parser)]
#[command(about = "Resolve a pool handle through the registrars and print its PEs")]
struct Args {
    /// Registrar UDP addresses.
    #[arg(long, value_delimiter = ',', required_unless_present = "announce")]
    registrar: Vec<SocketAddr>,
    /// Find registrars by listening for ASAP_SERVER_ANNOUNCE on this address
    /// (a multicast group or a unicast address) instead of a static list.
    #[arg(long)]
    announce: Option<SocketAddr>,
    /// Pool handle.
    #[arg(long)]
    pool: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Report this PE (hex id) unreachable before resolving.
    #[arg(long)]
    report: Option<String>,
    /// Local UDP address to send from (another loopback address makes another host).
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddr,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let handle = PoolHandle::new(a.pool.as_bytes().to_vec())
        .ok_or_else(|| anyhow::anyhow!("bad pool handle"))?;
    let mut registrars = a.registrar.clone();
    if let Some(group) = a.announce {
        let heard =
            poolgate::asap_client::discover_registrars(group, Duration::from_secs(3)).await?;
        anyhow::ensure!(
            !heard.is_empty(),
            "no registrar announced itself on {group}"
        );
        registrars.extend(heard.into_iter().map(|(_, addr)| addr));
    }
    let (transport, _l) = SctpUdp::bind(transport_for(a.bind))?;
    let mut pu = PoolUser::new(PuConfig::new(registrars), transport)?;
    if let Some(r) = &a.report {
        let id = u32::from_str_radix(r.trim_start_matches("0x"), 16)?;
        // Resolve first so the PU has a registrar association, then report.
        let _ = pu.resolve(&handle, Duration::from_secs(3)).await;
        pu.report_failure(&handle, id).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        pu.invalidate(&handle);
    }
    let pes = match pu.resolve(&handle, Duration::from_secs(3)).await {
        Ok(p) => p,
        Err(e) if e.to_string().contains("Empty") || e.to_string().contains("Unknown") => {
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    pu.close(Duration::from_millis(500)).await;
    if a.json {
        let ids: Vec<String> = pes.iter().map(|p| format!("{:08x}", p.id)).collect();
        println!("{}", serde_json::json!({ "pool": a.pool, "pes": ids }));
    } else {
        for p in &pes {
            println!("{:08x} {:08x} {:?}", p.id, p.home_registrar, p.policy);
        }
    }
    Ok(())
}
