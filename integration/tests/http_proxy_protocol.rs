//! PROXY protocol towards the backend on `tcp` listeners: nginx behind the PPEs expects
//! a PROXY header (v1 and v2) on every connection and reports the client address it
//! names; after the serving nginx is SIGKILLed the session continues on another
//! backend, which gets the same client address in a fresh header.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use poolgate_integration::harness::http_pool::{BackendKind, Cluster, ListenerSpec, Setup};

/// One `GET /pp` on a raw HTTP/1.1 connection: (client address, client port, nginx port).
fn ask(r: &mut BufReader<TcpStream>, w: &mut TcpStream) -> (String, u16, u16) {
    w.write_all(b"GET /pp HTTP/1.1\r\nHost: pp\r\n\r\n")
        .unwrap();
    let mut len = None;
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status:?}");
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse::<usize>().ok();
        }
    }
    let mut body = vec![0; len.expect("Content-Length")];
    r.read_exact(&mut body).unwrap();
    let text = String::from_utf8(body).unwrap();
    let f: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(f.len(), 3, "{text:?}");
    (
        f[0].to_string(),
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
    )
}

#[test]
fn backends_see_the_client_address_in_v1_and_v2_headers_across_a_failover() {
    let mut v1 = ListenerSpec::new("pp1", "tcp", None);
    v1.send_proxy = Some("v1");
    let mut v2 = ListenerSpec::new("pp2", "tcp", None);
    v2.send_proxy = Some("v2");
    let mut c = Cluster::start(Setup {
        backend: BackendKind::NginxProxyProtocol,
        listeners: vec![v1.clone(), v2.clone()],
        ..Setup::default()
    });
    for l in [&v1, &v2] {
        let s = TcpStream::connect(("127.0.0.1", l.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let me = s.local_addr().unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let (addr, port, server) = ask(&mut r, &mut w);
        assert_eq!(
            (addr.as_str(), port),
            ("127.0.0.1", me.port()),
            "{}",
            l.name
        );
        let victim = c
            .backends
            .iter()
            .position(|b| b.port == server)
            .expect("answered by one of the backends");
        c.kill_backend(victim);
        let (addr, port, server2) = ask(&mut r, &mut w);
        assert_eq!(
            (addr.as_str(), port),
            ("127.0.0.1", me.port()),
            "{}",
            l.name
        );
        assert_ne!(
            server2, server,
            "answered by another backend after the kill"
        );
        c.restart_backend(victim);
    }
    assert!(c.ppu_counter("poolgate_ppu_failovers_resumed_total") >= 2.0);
}
