//! Three real registrars (`poolgate registrar`) with ENRP between them on loopback,
//! bare PEs (`pg-pe`) spread over them and a resolving PU (`pg-resolve`):
//! SIGKILL one registrar; every PE it was home for stays resolvable through the
//! others, gets a new home within a bound, none is lost or duplicated; restart it
//! and the handlespace checksums of all three agree again.
//!
//! Needs the `poolgate` binary: `cargo build -p poolgate` (the workspace test run
//! builds it).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use poolgate_integration::{bin, free_tcp_port, free_udp_port, Child};

const SECRET: &str = "enrp scope secret for the test 0123";
const POOLS: [&str; 3] = ["alpha", "beta", "gamma"];

struct Registrar {
    id: u32,
    port: u16,
    metrics: u16,
    config: std::path::PathBuf,
    child: Option<Child>,
}

impl Registrar {
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
        let child = Command::new(bin("poolgate"))
            .args(["--log-level", "warn", "registrar", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.child = Some(Child(child));
    }

    /// The registrar's Prometheus text, if it answers.
    fn metrics(&self) -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    fn metric(&self, name: &str) -> Option<f64> {
        let text = self.metrics()?;
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// This registrar's view of the checksum of every registrar's PEs.
    fn checksums(&self) -> Option<BTreeMap<u32, u16>> {
        let text = self.metrics()?;
        let mut out = BTreeMap::new();
        for l in text.lines() {
            let Some(rest) = l.strip_prefix("poolgate_registrar_enrp_checksum{registrar=\"") else {
                continue;
            };
            let (id, rest) = rest.split_once('"')?;
            let v: f64 = rest.rsplit(' ').next()?.parse().ok()?;
            out.insert(id.parse().ok()?, v as u16);
        }
        Some(out)
    }
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scope(n: u32) -> (Vec<Registrar>, TempDir) {
    let dir = std::env::temp_dir().join(format!(
        "pg-enrp-{}-{}",
        std::process::id(),
        free_udp_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let ports: Vec<u16> = (0..n).map(|_| free_udp_port()).collect();
    let mut regs = Vec::new();
    for i in 0..n as usize {
        let id = i as u32 + 1;
        let metrics = free_tcp_port();
        let mut peers = String::new();
        for (j, p) in ports.iter().enumerate() {
            if j != i {
                peers += &format!(
                    "[[registrar.peer]]\nid = {}\naddresses = [\"127.0.0.1:{p}\"]\n",
                    j + 1
                );
            }
        }
        let config = dir.join(format!("r{id}.toml"));
        std::fs::write(
            &config,
            format!(
                "[registrar]\nid = {id}\nlisten = [\"127.0.0.1:{}\"]\n{peers}\n\
                 [registrar.keepalive]\ninterval = \"250ms\"\ntimeout = \"250ms\"\n\
                 [registrar.enrp]\npresence_interval = \"250ms\"\nmax_time_last_heard = \"500ms\"\n\
                 max_time_no_response = \"250ms\"\ntakeover_timeout = \"500ms\"\nsecret = \"{SECRET}\"\n\
                 [registrar.metrics]\nlisten = \"127.0.0.1:{metrics}\"\n",
                ports[i]
            ),
        )
        .unwrap();
        regs.push(Registrar {
            id,
            port: ports[i],
            metrics,
            config,
            child: None,
        });
    }
    (regs, TempDir(dir))
}

/// (PE id, home) of a pool, resolved through one registrar; `None` if that failed.
fn resolve(reg: &Registrar, pool: &str) -> Option<Vec<(u32, u32)>> {
    let out = Command::new(bin("pg-resolve"))
        .args(["--registrar", &reg.addr(), "--pool", pool])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut v: Vec<(u32, u32)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let id = u32::from_str_radix(w.next()?, 16).ok()?;
            let home = u32::from_str_radix(w.next()?, 16).ok()?;
            Some((id, home))
        })
        .collect();
    v.sort();
    Some(v)
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    loop {
        if f() {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn pe_id(pool: usize, reg: usize) -> u32 {
    0x0e00_0000 | ((pool as u32 + 1) << 8) | (reg as u32 + 1)
}

#[test]
fn killed_registrar_is_taken_over_and_resynchronises_after_restart() {
    let (mut regs, _dir) = scope(3);
    for r in regs.iter_mut() {
        r.start();
    }
    let t_start = Instant::now();
    wait_until("ENRP peers up", Duration::from_secs(15), || {
        regs.iter()
            .all(|r| r.metric("poolgate_registrar_enrp_live_peers") == Some(2.0))
    });
    println!(
        "three registrars see each other after {:?}",
        t_start.elapsed()
    );

    // One PE of every pool at every registrar; each lists its registrar first.
    let mut pes = Vec::new();
    for (p, pool) in POOLS.iter().enumerate() {
        for r in 0..regs.len() {
            let mut list = vec![regs[r].addr()];
            list.extend(
                regs.iter()
                    .filter(|x| x.id != regs[r].id)
                    .map(Registrar::addr),
            );
            let child = Command::new(bin("pg-pe"))
                .args(["--registrar", &list.join(","), "--pool", pool])
                .args(["--id", &format!("{:08x}", pe_id(p, r)), "--life", "3s"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            pes.push(Child(child));
        }
    }
    let expected = |p: usize| -> Vec<u32> { (0..3).map(|r| pe_id(p, r)).collect() };
    let t = wait_until(
        "all PEs everywhere with their homes",
        Duration::from_secs(15),
        || {
            regs.iter().all(|reg| {
                POOLS.iter().enumerate().all(|(p, pool)| {
                    resolve(reg, pool).is_some_and(|v| {
                        v == (0..3)
                            .map(|r| (pe_id(p, r), r as u32 + 1))
                            .collect::<Vec<_>>()
                    })
                })
            })
        },
    );
    println!("9 PEs replicated to all three registrars after {t:?}");

    // SIGKILL registrar 1.
    let killed_at = Instant::now();
    drop(regs[0].child.take());
    let survivors = [&regs[1], &regs[2]];
    let mut resolutions = 0;
    let took = wait_until(
        "takeover of registrar 1's PEs",
        Duration::from_secs(20),
        || {
            let mut all_moved = true;
            for reg in survivors {
                for (p, pool) in POOLS.iter().enumerate() {
                    let v = resolve(reg, pool)
                        .unwrap_or_else(|| panic!("resolution through {} failed", reg.id));
                    resolutions += 1;
                    let ids: Vec<u32> = v.iter().map(|&(id, _)| id).collect();
                    // Never lost, never duplicated: always exactly the three PEs.
                    assert_eq!(ids, expected(p), "pool {pool} through registrar {}", reg.id);
                    all_moved &= v.iter().all(|&(_, home)| home == 2 || home == 3);
                }
            }
            all_moved
        },
    );
    println!(
        "registrar 1 SIGKILLed: its PEs stayed resolvable ({resolutions} resolutions) and had a new home after {took:?} \
         (ENRP detection bound 500ms + 250ms, takeover, PE re-registration interval 1s)"
    );
    assert!(took < Duration::from_secs(5), "takeover took {took:?}");
    let homes_agree = wait_until("survivors agree on homes", Duration::from_secs(5), || {
        POOLS
            .iter()
            .all(|pool| resolve(survivors[0], pool) == resolve(survivors[1], pool))
    });
    let _ = homes_agree;
    let taken = regs[1]
        .metric("poolgate_registrar_enrp_takeovers_total")
        .unwrap_or(0.0)
        + regs[2]
            .metric("poolgate_registrar_enrp_takeovers_total")
            .unwrap_or(0.0);
    println!("takeovers won by the survivors: {taken}");
    assert!(taken <= 1.0, "two registrars took over registrar 1");

    // Restart registrar 1: it loads the handlespace and the checksums agree.
    let restarted = Instant::now();
    regs[0].start();
    let sync = wait_until(
        "checksums agree after restart",
        Duration::from_secs(15),
        || {
            let sums: Vec<Option<BTreeMap<u32, u16>>> =
                regs.iter().map(Registrar::checksums).collect();
            let Some(first) = sums[0].clone() else {
                return false;
            };
            first.len() >= 3 && sums.iter().all(|s| s.as_ref() == Some(&first))
        },
    );
    println!("restarted registrar 1 in sync (checksums equal) after {sync:?}");
    let sums = regs[0].checksums().unwrap();
    println!("checksums per home registrar: {sums:?}");
    for (p, pool) in POOLS.iter().enumerate() {
        let v = resolve(&regs[0], pool).expect("restarted registrar resolves");
        let ids: BTreeSet<u32> = v.iter().map(|&(id, _)| id).collect();
        assert_eq!(
            ids,
            expected(p).into_iter().collect(),
            "pool {pool} at the restarted registrar"
        );
    }
    println!("total {:?} since the kill", killed_at.elapsed());
    let _ = restarted;
    drop(pes);
}
