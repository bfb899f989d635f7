//! Partition test with network namespaces: three registrars, each in its own
//! namespace with a veth into a bridge; PEs run next to each registrar (in its
//! namespace). Cutting registrar 1's link partitions the scope: registrars 2 and 3
//! (the majority) take over registrar 1's PEs, registrar 1 (alone) takes over
//! nothing and keeps serving its PEs; no PE is lost or duplicated anywhere. After
//! the link comes back the handlespaces agree again (checksums equal) and
//! registrar 1 is again home of the PEs registered with it.
//!
//! Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN) for `ip netns`; without it the
//! test fails unless `POOLGATE_SKIP_NETNS=1`.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use poolgate_integration::harness::enrp_scope::{checksums, run_resolution, SECRET};
use poolgate_integration::harness::metrics;
use poolgate_integration::harness::wait::wait_until;
use poolgate_integration::{bin, free_tcp_port, Child};

const PORT: u16 = 9899;

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Namespaces, veths and the bridge; removed on drop.
struct Net {
    tag: u32,
    subnet: String,
    n: usize,
}

impl Net {
    fn ns(&self, i: usize) -> String {
        format!("pge{}r{i}", self.tag)
    }
    fn host_veth(&self, i: usize) -> String {
        format!("pgev{}r{i}", self.tag)
    }
    fn bridge(&self) -> String {
        format!("pgeb{}", self.tag)
    }
    fn addr(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 1)
    }

    fn setup(n: usize) -> Option<Net> {
        let tag = std::process::id() % 100_000;
        let net = Net {
            tag,
            subnet: format!("10.231.{}", tag % 250),
            n,
        };
        let br = net.bridge();
        let ok = ip(&["link", "add", &br, "type", "bridge"])
            && ip(&["addr", "add", &format!("{}.254/24", net.subnet), "dev", &br])
            && ip(&["link", "set", &br, "up"]);
        if !ok {
            return None;
        }
        for i in 0..n {
            let (ns, hv, nv) = (net.ns(i), net.host_veth(i), format!("pgen{}r{i}", tag));
            let ok = ip(&["netns", "add", &ns])
                && ip(&["link", "add", &hv, "type", "veth", "peer", "name", &nv])
                && ip(&["link", "set", &nv, "netns", &ns])
                && ip(&["link", "set", &hv, "master", &br])
                && ip(&["link", "set", &hv, "up"])
                && ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"])
                && ip(&[
                    "netns", "exec", &ns, "ip", "link", "set", &nv, "name", "eth0",
                ])
                && ip(&[
                    "netns",
                    "exec",
                    &ns,
                    "ip",
                    "addr",
                    "add",
                    &format!("{}/24", net.addr(i)),
                    "dev",
                    "eth0",
                ])
                && ip(&["netns", "exec", &ns, "ip", "link", "set", "eth0", "up"]);
            assert!(ok, "network namespace setup failed for {ns}");
        }
        Some(net)
    }

    fn set_link(&self, i: usize, up: bool) {
        assert!(ip(&[
            "link",
            "set",
            &self.host_veth(i),
            if up { "up" } else { "down" }
        ]));
    }

    /// A command run inside registrar `i`'s namespace.
    fn cmd(&self, i: usize, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(i)]).arg(program);
        c
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.n {
            let _ = ip(&["netns", "del", &self.ns(i)]);
            let _ = ip(&["link", "del", &self.host_veth(i)]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}

struct Reg {
    metrics_addr: String,
    _child: Child,
}

impl Reg {
    fn checksums(&self) -> Option<BTreeMap<u32, u16>> {
        checksums(&metrics::scrape(
            self.metrics_addr.as_str(),
            Duration::from_secs(2),
        )?)
    }
}

/// (PE id, home) of a pool resolved through registrar `i` (run inside its namespace).
fn resolve(net: &Net, i: usize, pool: &str) -> Option<Vec<(u32, u32)>> {
    run_resolution(net.cmd(i, &bin("pg-resolve")).args([
        "--registrar",
        &format!("127.0.0.1:{PORT}"),
        "--pool",
        pool,
    ]))
}

fn pe_id(pool: usize, reg: usize) -> u32 {
    0x0f00_0000 | ((pool as u32 + 1) << 8) | (reg as u32 + 1)
}

const POOLS: [&str; 2] = ["alpha", "beta"];

#[test]
fn partition_of_one_registrar_takeover_and_heal() {
    let Some(net) = Net::setup(3) else {
        if std::env::var("POOLGATE_SKIP_NETNS").as_deref() == Ok("1") {
            eprintln!("no network namespaces; skipped because POOLGATE_SKIP_NETNS=1");
            return;
        }
        panic!("cannot create network namespaces (needs root), or set POOLGATE_SKIP_NETNS=1");
    };
    let dir = std::env::temp_dir().join(format!("pg-enrp-netns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut regs = Vec::new();
    for i in 0..3 {
        let metrics = free_tcp_port();
        let mut peers = String::new();
        for j in (0..3).filter(|&j| j != i) {
            peers += &format!(
                "[[registrar.peer]]\nid = {}\naddresses = [\"{}:{PORT}\"]\n",
                j + 1,
                net.addr(j)
            );
        }
        let config = dir.join(format!("r{i}.toml"));
        std::fs::write(
            &config,
            format!(
                "[registrar]\nid = {}\nlisten = [\"0.0.0.0:{PORT}\"]\n{peers}\n\
                 [registrar.keepalive]\ninterval = \"250ms\"\ntimeout = \"250ms\"\n\
                 [registrar.enrp]\npresence_interval = \"250ms\"\nmax_time_last_heard = \"750ms\"\n\
                 max_time_no_response = \"500ms\"\ntakeover_timeout = \"500ms\"\nsecret = \"{SECRET}\"\n\
                 [registrar.metrics]\nlisten = \"{}:{metrics}\"\n",
                i + 1,
                net.addr(i)
            ),
        )
        .unwrap();
        let child = net
            .cmd(i, &bin("poolgate"))
            .args(["--log-level", "info", "registrar", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        regs.push(Reg {
            metrics_addr: format!("{}:{metrics}", net.addr(i)),
            _child: Child(child),
        });
    }
    let mut pes = Vec::new();
    for (p, pool) in POOLS.iter().enumerate() {
        for i in 0..3 {
            let child = net
                .cmd(i, &bin("pg-pe"))
                .args(["--registrar", &format!("127.0.0.1:{PORT}"), "--pool", pool])
                .args(["--id", &format!("{:08x}", pe_id(p, i)), "--life", "30s"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            pes.push(Child(child));
        }
    }
    let original =
        |p: usize| -> Vec<(u32, u32)> { (0..3).map(|r| (pe_id(p, r), r as u32 + 1)).collect() };
    let t = wait_until("all PEs at all registrars", Duration::from_secs(20), || {
        (0..3).all(|i| {
            POOLS
                .iter()
                .enumerate()
                .all(|(p, pool)| resolve(&net, i, pool) == Some(original(p)))
        })
    });
    println!("6 PEs replicated over the bridge after {t:?}");

    // Cut registrar 1 off.
    let cut_at = Instant::now();
    net.set_link(0, false);
    let took = wait_until(
        "majority takes over registrar 1's PEs",
        Duration::from_secs(15),
        || {
            let mut moved = true;
            for i in 1..3 {
                for (p, pool) in POOLS.iter().enumerate() {
                    let v = resolve(&net, i, pool).expect("resolution in the majority");
                    let ids: Vec<u32> = v.iter().map(|x| x.0).collect();
                    let want: Vec<u32> = original(p).iter().map(|x| x.0).collect();
                    assert_eq!(
                        ids,
                        want,
                        "pool {pool} at registrar {}: lost or duplicated",
                        i + 1
                    );
                    moved &= v.iter().all(|&(_, h)| h != 1);
                }
            }
            moved
        },
    );
    println!("partition: registrars 2 and 3 took over registrar 1's PEs after {took:?}");
    assert!(took < Duration::from_secs(5));
    // Registrar 1, alone, still serves everything with the original homes.
    std::thread::sleep(Duration::from_millis(1500));
    for (p, pool) in POOLS.iter().enumerate() {
        assert_eq!(
            resolve(&net, 0, pool),
            Some(original(p)),
            "isolated registrar 1 changed pool {pool}"
        );
        let a = resolve(&net, 1, pool);
        assert_eq!(
            a,
            resolve(&net, 2, pool),
            "majority disagrees on pool {pool}"
        );
    }

    // Heal.
    let healed_at = Instant::now();
    net.set_link(0, true);
    let sync = wait_until(
        "handlespaces agree after healing",
        Duration::from_secs(20),
        || {
            let sums: Vec<_> = regs.iter().map(Reg::checksums).collect();
            sums[0].as_ref().is_some_and(|s| s.len() >= 3)
                && sums.iter().all(|s| s == &sums[0])
                && (0..3).all(|i| {
                    POOLS
                        .iter()
                        .enumerate()
                        .all(|(p, pool)| resolve(&net, i, pool) == Some(original(p)))
                })
        },
    );
    println!(
        "healed: checksums equal and registrar 1 home of its PEs again after {sync:?} ({:?} since the cut); checksums {:?}",
        cut_at.elapsed(),
        regs[0].checksums().unwrap()
    );
    let _ = healed_at;
    drop(pes);
    drop(regs);
    let _ = std::fs::remove_dir_all(&dir);
}
