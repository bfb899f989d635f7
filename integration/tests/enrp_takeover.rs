//! Three real registrars (`poolgate registrar`) with ENRP between them on loopback,
//! bare PEs (`pg-pe`) spread over them and a resolving PU (`pg-resolve`):
//! SIGKILL one registrar; every PE it was home for stays resolvable through the
//! others, gets a new home within a bound, none is lost or duplicated; restart it
//! and the handlespace checksums of all three agree again.
//!
//! Needs the `poolgate` binary: `cargo build -p poolgate` (the workspace test run
//! builds it).

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use poolgate_integration::harness::enrp_scope::*;
use poolgate_integration::harness::wait::wait_until;
use poolgate_integration::{bin, Child};

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
    // Full audits (a peer's table each second although the checksums agree) leave
    // the agreed handlespace as it is.
    wait_until("full ENRP audits", Duration::from_secs(10), || {
        regs.iter().all(|r| {
            r.metric("poolgate_registrar_enrp_full_audits_total")
                .is_some_and(|n| n >= 2.0)
        })
    });
    for reg in &regs {
        for (p, pool) in POOLS.iter().enumerate() {
            let homes: Vec<(u32, u32)> = (0..3).map(|r| (pe_id(p, r), r as u32 + 1)).collect();
            assert_eq!(
                resolve(reg, pool),
                Some(homes),
                "after full audits, registrar {}",
                reg.id
            );
        }
    }

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
    // A PU whose first registrar is the dead one hunts on to the next.
    let out = Command::new(bin("pg-resolve"))
        .args([
            "--registrar",
            &format!("{},{}", regs[0].addr(), regs[1].addr()),
            "--pool",
            POOLS[0],
        ])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "PU server hunt past the dead registrar failed"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);

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
