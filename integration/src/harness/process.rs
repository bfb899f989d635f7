//! Child processes: a guard that SIGKILLs on drop, the workspace's binaries, and the
//! `poolgate <role> --config <file>` command line every pool process runs with.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

/// A child process killed (SIGKILL) when dropped.
pub struct Child(pub std::process::Child);

impl Child {
    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        // kill(2) through the `kill` command keeps this crate free of unsafe; the tests
        // run on Linux where it exists.
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.0.id().to_string())
            .status();
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Directory holding the workspace's built binaries (`target/<profile>`), derived
/// from the running executable: a test (`target/<profile>/deps/<test>`) or a tool
/// (`target/<profile>/<tool>`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("profile dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Path of a workspace binary; panics with a clear message when it was not built, or
/// (in a test) when it is `poolgate` and older than the sources it is built from:
/// `cargo test -p poolgate-integration` builds this package's binaries, not `poolgate`,
/// and a test must not pass or fail on a stale one.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not built: run the whole suite (cargo test --workspace) so every binary is built",
        p.display()
    );
    let in_test = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.ends_with("deps")))
        .unwrap_or(false);
    if name == "poolgate" && in_test {
        if let Some(newer) = newer_source(&p, POOLGATE_SOURCES) {
            panic!(
                "{} is older than {}: build it first (cargo build --profile ci -p poolgate \
                 --bins, or the profile this test runs with) or run the whole suite \
                 (cargo test --workspace)",
                p.display(),
                newer.display()
            );
        }
    }
    p
}

/// The source folders (from the workspace root) the `poolgate` binary is built from.
const POOLGATE_SOURCES: &[&str] = &["gateway/src", "pool-core/src", "sctp/src", "plugins/src"];

/// A Rust source under `dirs` modified after `binary` was written (with two seconds'
/// grace for coarse clocks), if any.
fn newer_source(binary: &Path, dirs: &[&str]) -> Option<PathBuf> {
    let built = std::fs::metadata(binary).and_then(|m| m.modified()).ok()?;
    let built = built + std::time::Duration::from_secs(2);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    let mut stack: Vec<PathBuf> = dirs.iter().map(|d| root.join(d)).collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs")
                && meta.modified().is_ok_and(|m| m > built)
            {
                return Some(path);
            }
        }
    }
    None
}

/// Path of a system program Debian installs in `/usr/sbin` (which a user's PATH may
/// lack); the bare name (found through PATH) elsewhere.
pub fn sbin(name: &str) -> PathBuf {
    let p = Path::new("/usr/sbin").join(name);
    if p.exists() {
        p
    } else {
        PathBuf::from(name)
    }
}

/// Spawns `cmd` with stdout discarded and stderr shared; `what` names it in the error.
pub fn spawn(cmd: &mut Command, what: &str) -> anyhow::Result<Child> {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map(Child)
        .with_context(|| format!("start {what}"))
}

/// Starts `poolgate --log-level <log> <role> --config <config>` (stdout discarded).
pub fn try_poolgate(role: &str, config: &Path, log: &str) -> anyhow::Result<Child> {
    spawn(
        Command::new(bin("poolgate"))
            .args(["--log-level", log, role, "--config"])
            .arg(config),
        &format!("poolgate {role}"),
    )
}

/// [`try_poolgate`] for tests: panics when the process cannot be started.
pub fn poolgate(role: &str, config: &Path, log: &str) -> Child {
    try_poolgate(role, config, log).unwrap_or_else(|e| panic!("{e:#}"))
}
