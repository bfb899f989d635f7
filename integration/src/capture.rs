//! Packet captures on loopback with tshark, for tests that check what goes on the wire.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::Child;

/// Whether tshark can be used. Without it a capture test fails, unless
/// `POOLGATE_SKIP_TSHARK=1` says to skip it (then this returns false).
pub fn tshark_present() -> bool {
    if Command::new("tshark").arg("--version").output().is_ok() {
        return true;
    }
    if std::env::var("POOLGATE_SKIP_TSHARK").as_deref() == Ok("1") {
        eprintln!("tshark not installed; skipped because POOLGATE_SKIP_TSHARK=1");
        return false;
    }
    panic!(
        "tshark is not installed (apt-get install tshark), or set POOLGATE_SKIP_TSHARK=1 to skip"
    );
}

/// How long [`LoopbackCapture::start`] waits after tshark says it captures.
pub const CAPTURE_SETTLE: Duration = Duration::from_millis(500);

/// A running capture of UDP traffic on `lo` into a pcapng file in its own temporary
/// folder (removed when the capture is dropped).
pub struct LoopbackCapture {
    child: Option<Child>,
    dir: PathBuf,
    pcap: PathBuf,
}

impl LoopbackCapture {
    /// Starts capturing packets that match the capture `filter` (e.g. `udp port 9899`)
    /// and returns once tshark says it captures, plus [`CAPTURE_SETTLE`].
    pub fn start(name: &str, filter: &str) -> LoopbackCapture {
        let dir = std::env::temp_dir().join(format!(
            "pg-{name}-{}-{}",
            std::process::id(),
            crate::free_udp_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let pcap = dir.join(format!("{name}.pcapng"));
        let mut child = Command::new("tshark")
            .args(["-i", "lo", "-f", filter, "-w"])
            .arg(&pcap)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tshark");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Capturing on") {
                    let _ = tx.send(());
                }
            }
        });
        let child = Child(child);
        rx.recv_timeout(Duration::from_secs(20))
            .expect("tshark did not start capturing");
        // tshark reports "Capturing on" a little before packets are really taken (seen
        // losing a whole handshake on a loaded machine); no packet may be injected to
        // probe it (the tests decode every captured one), so a fixed settle it is.
        std::thread::sleep(CAPTURE_SETTLE);
        LoopbackCapture {
            child: Some(child),
            dir,
            pcap,
        }
    }

    /// Stops the capture (SIGINT, so the file is complete) and returns its path.
    pub fn stop(&mut self) -> &Path {
        if let Some(mut c) = self.child.take() {
            c.signal(2);
            let _ = c.0.wait();
        }
        &self.pcap
    }
}

impl Drop for LoopbackCapture {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What to ask tshark about a capture in [`decode_sctp_over_udp`].
#[derive(Default)]
pub struct SctpDecode<'a> {
    /// UDP ports whose payload is decoded as SCTP.
    pub udp_ports: &'a [u16],
    /// A display filter (`-Y`), if only some packets count.
    pub filter: Option<&'a str>,
    /// Dissectors to switch off (e.g. `asap`, so only the SCTP layer is judged).
    pub disable: &'a [&'a str],
    /// The fields to report per packet (`-e`), in this order.
    pub fields: &'a [&'a str],
}

/// One packet of a [`decode_sctp_over_udp`] report: the requested fields in order,
/// several occurrences of one field joined by commas.
pub struct Packet {
    /// The report line as tshark printed it (for failure messages).
    pub line: String,
    /// The requested fields.
    pub fields: Vec<String>,
}

impl Packet {
    /// Field `i` as printed (occurrences joined by commas; empty when absent).
    pub fn field(&self, i: usize) -> &str {
        &self.fields[i]
    }

    /// The non-empty occurrences of field `i`.
    pub fn values(&self, i: usize) -> Vec<&str> {
        self.fields[i]
            .split(',')
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// Decodes `pcap` with tshark as SCTP over UDP (CRC-32C checksums) and returns the
/// requested fields of every packet. Panics when tshark fails, when a packet is
/// malformed, or when a packet's SCTP checksum is not exactly one verified good one
/// (`sctp.checksum.status == 1`), so every capture test checks those the same way.
pub fn decode_sctp_over_udp(pcap: &Path, q: &SctpDecode) -> Vec<Packet> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(pcap)
        .args(["-n", "-o", "sctp.checksum:CRC-32C"]);
    for p in q.udp_ports {
        cmd.args(["-d", &format!("udp.port=={p},sctp")]);
    }
    if let Some(f) = q.filter {
        cmd.args(["-Y", f]);
    }
    for d in q.disable {
        cmd.args(["--disable-protocol", d]);
    }
    cmd.args(["-T", "fields", "-E", "separator=|", "-E", "occurrence=a"])
        .args(["-E", "aggregator=,"]);
    // The two checked here come last, after the caller's.
    for f in q
        .fields
        .iter()
        .chain(&["sctp.checksum.status", "_ws.malformed"])
    {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("run tshark");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n = q.fields.len();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut fields: Vec<String> = line.split('|').map(str::to_string).collect();
            assert_eq!(fields.len(), n + 2, "{line}");
            assert!(fields[n + 1].is_empty(), "malformed packet: {line}");
            assert_eq!(fields[n], "1", "bad or unverified checksum: {line}");
            fields.truncate(n);
            Packet {
                line: line.to_string(),
                fields,
            }
        })
        .collect()
}
