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

/// A running capture of UDP traffic on `lo` into a pcapng file in its own temporary
/// folder (removed when the capture is dropped).
pub struct LoopbackCapture {
    child: Option<Child>,
    dir: PathBuf,
    pcap: PathBuf,
}

impl LoopbackCapture {
    /// Starts capturing packets that match the capture `filter` (e.g. `udp port 9899`)
    /// and returns once tshark says it captures.
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
