//! Status documents: what `GET /status` answers and how `poolgate status` prints it.
//!
//! The registrar's document is its handlespace: pools with their policy and PEs
//! (identifier, home registrar, policy, load, transports, age, registration expiry,
//! failure reports). It is JSON so that scripts can use it (`poolgate status --json`);
//! people get a table.

use serde_json::{json, Value};

use pool_core::asap::registrar::RegistrarSnapshot;
use pool_core::types::{Policy, Transport, TransportProtocol};

fn policy_name(p: &Policy) -> &'static str {
    match p {
        Policy::RoundRobin => "round-robin",
        Policy::WeightedRoundRobin { .. } => "weighted-round-robin",
        Policy::Random => "random",
        Policy::WeightedRandom { .. } => "weighted-random",
        Policy::Priority { .. } => "priority",
        Policy::LeastUsed { .. } => "least-used",
        Policy::LeastUsedDegradation { .. } => "least-used-degradation",
        Policy::PriorityLeastUsed { .. } => "priority-least-used",
        Policy::RandomizedLeastUsed { .. } => "randomized-least-used",
    }
}

fn transport_text(t: &Transport) -> String {
    let proto = match t.protocol {
        TransportProtocol::Sctp => "sctp",
        TransportProtocol::Tcp => "tcp",
        TransportProtocol::Udp => "udp",
        TransportProtocol::UdpLite => "udplite",
    };
    let addrs: Vec<String> = t.addresses.iter().map(|a| a.to_string()).collect();
    format!("{proto}:{}:{}", addrs.join(","), t.port)
}

/// The registrar's status document.
pub fn registrar_json(snap: &RegistrarSnapshot) -> Value {
    let pools: Vec<Value> = snap
        .pools
        .iter()
        .map(|p| {
            let elements: Vec<Value> = p
                .elements
                .iter()
                .map(|e| {
                    json!({
                        "id": format!("{:08x}", e.id),
                        "home": format!("{:08x}", e.home),
                        "policy": policy_name(&e.policy),
                        // Load in percent of the RFC 5356 scale (u32::MAX = 100 %).
                        "load_percent": e.load.map(|l| (l as f64) * 100.0 / (u32::MAX as f64)),
                        "transports": e.user_transports.iter().map(transport_text).collect::<Vec<_>>(),
                        "age_ms": e.age.as_millis() as u64,
                        "expires_in_ms": e.expires_in.map(|d| d.as_millis() as u64),
                        "failure_reports": e.failure_reports,
                        "local": e.peer.is_some(),
                    })
                })
                .collect();
            json!({
                "handle": p.handle.to_string(),
                "policy": format!("{:?}", p.policy),
                "secured": p.secured,
                "elements": elements,
            })
        })
        .collect();
    json!({ "role": "registrar", "id": format!("{:08x}", snap.id), "pools": pools })
}

/// A status document as a table for people.
pub fn render_table(doc: &Value) -> String {
    let mut rows: Vec<[String; 8]> = vec![[
        "POOL".into(),
        "PE".into(),
        "HOME".into(),
        "POLICY".into(),
        "LOAD".into(),
        "TRANSPORT".into(),
        "AGE".into(),
        "REPORTS".into(),
    ]];
    let empty = Vec::new();
    for p in doc["pools"].as_array().unwrap_or(&empty) {
        let handle = p["handle"].as_str().unwrap_or("?").to_string();
        for e in p["elements"].as_array().unwrap_or(&empty) {
            let load = match e["load_percent"].as_f64() {
                Some(l) => format!("{l:.1}%"),
                None => "-".into(),
            };
            let transports: Vec<&str> = e["transports"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let age = e["age_ms"].as_u64().unwrap_or(0) as f64 / 1000.0;
            rows.push([
                handle.clone(),
                e["id"].as_str().unwrap_or("?").into(),
                e["home"].as_str().unwrap_or("?").into(),
                e["policy"].as_str().unwrap_or("?").into(),
                load,
                transports.join(" "),
                format!("{age:.1}s"),
                e["failure_reports"].as_u64().unwrap_or(0).to_string(),
            ]);
        }
    }
    let mut widths = [0usize; 8];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let pools = doc["pools"].as_array().map(|a| a.len()).unwrap_or(0);
    out.push_str(&format!(
        "{} {}: {} pools, {} PEs\n",
        doc["role"].as_str().unwrap_or("poolgate"),
        doc["id"].as_str().unwrap_or(""),
        pools,
        rows.len() - 1
    ));
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pool_core::asap::registrar::{PeSnapshot, PoolSnapshot, RegistrarCounters};
    use pool_core::policy::PolicyKind;
    use pool_core::types::{PoolHandle, TransportUse};
    use std::time::Duration;

    #[test]
    fn table_lists_every_pe_with_its_fields() {
        let pe = |id, load| PeSnapshot {
            id,
            home: 7,
            policy: Policy::LeastUsed { load },
            load: Some(load),
            user_transports: vec![Transport {
                protocol: TransportProtocol::Sctp,
                port: 3863,
                transport_use: TransportUse::DataPlusControl,
                addresses: vec!["127.0.0.1".parse().unwrap()],
            }],
            age: Duration::from_millis(1500),
            expires_in: Some(Duration::from_secs(28)),
            peer: Some(1),
            failure_reports: 2,
        };
        let snap = RegistrarSnapshot {
            id: 7,
            pools: vec![PoolSnapshot {
                handle: PoolHandle::new(b"web".to_vec()).unwrap(),
                policy: PolicyKind::LeastUsed,
                secured: false,
                elements: vec![pe(0xaa, 0), pe(0xbb, u32::MAX / 2)],
            }],
            counters: RegistrarCounters::default(),
        };
        let doc = registrar_json(&snap);
        assert_eq!(doc["pools"][0]["elements"][1]["id"], "000000bb");
        let t = render_table(&doc);
        assert!(t.starts_with("registrar 00000007: 1 pools, 2 PEs\n"), "{t}");
        assert!(t.contains("000000aa"), "{t}");
        assert!(t.contains("50.0%"), "{t}");
        assert!(t.contains("sctp:127.0.0.1:3863"), "{t}");
        assert!(t.contains("least-used"), "{t}");
        assert_eq!(t.lines().count(), 4, "{t}");
    }
}
