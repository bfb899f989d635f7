//! The shipped systemd units and `systemd/install.sh`: the units pass
//! `systemd-analyze verify` and a good `security` score, and installing twice into a
//! staging root changes nothing the second time and never overwrites edited configs.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_poolgate");
const UNITS: [&str; 3] = [
    "poolgate-registrar.service",
    "poolgate-ppu.service",
    "poolgate-ppe@.service",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("poolgate-units-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn install(destdir: &Path) -> String {
    let out = Command::new("sh")
        .arg(repo().join("systemd/install.sh"))
        .arg(BIN)
        .env("DESTDIR", destdir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "install.sh failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn install_is_idempotent_and_keeps_edited_configs() {
    let d = Dir::new("install");
    let root = &d.0;
    let first = install(root);
    assert_eq!(
        first.lines().filter(|l| l.starts_with("installed")).count(),
        7,
        "{first}"
    );

    let bin = root.join("usr/local/bin/poolgate");
    assert_eq!(std::fs::read(&bin).unwrap(), std::fs::read(BIN).unwrap());
    for unit in UNITS {
        let text = std::fs::read_to_string(root.join("etc/systemd/system").join(unit)).unwrap();
        assert!(
            text.contains("ExecStart=/usr/local/bin/poolgate "),
            "{unit}"
        );
    }
    for f in ["registrar.toml", "ppe.toml", "ppu.toml"] {
        let shipped = std::fs::read(repo().join("config").join(f)).unwrap();
        assert_eq!(
            std::fs::read(root.join("etc/poolgate").join(f)).unwrap(),
            shipped,
            "{f}"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let secrets = std::fs::metadata(root.join("etc/poolgate/secrets")).unwrap();
    assert_eq!(secrets.permissions().mode() & 0o777, 0o700);

    // The operator edits a file; reinstalling keeps it and leaves everything else alone.
    let edited = root.join("etc/poolgate/ppu.toml");
    let mut text = std::fs::read_to_string(&edited).unwrap();
    text.push_str("# edited by the operator\n");
    std::fs::write(&edited, &text).unwrap();
    let mtime = std::fs::metadata(&bin).unwrap().modified().unwrap();

    let second = install(root);
    assert_eq!(
        second
            .lines()
            .filter(|l| l.starts_with("installed"))
            .count(),
        0,
        "{second}"
    );
    assert_eq!(
        second
            .lines()
            .filter(|l| l.starts_with("unchanged"))
            .count(),
        6,
        "{second}"
    );
    assert!(
        second.contains("kept") && second.contains("ppu.toml.new"),
        "{second}"
    );
    assert_eq!(std::fs::read_to_string(&edited).unwrap(), text);
    assert_eq!(
        std::fs::read(root.join("etc/poolgate/ppu.toml.new")).unwrap(),
        std::fs::read(repo().join("config/ppu.toml")).unwrap()
    );
    assert_eq!(std::fs::metadata(&bin).unwrap().modified().unwrap(), mtime);

    // The installed defaults are what `poolgate check` accepts.
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(root.join("etc/poolgate/registrar.toml"))
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Units with ExecStart pointing at the freshly built binary (verify checks it exists).
fn units_for_verify(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for unit in UNITS {
        let text = std::fs::read_to_string(repo().join("systemd").join(unit)).unwrap();
        let text = text.replace("/usr/local/bin/poolgate", BIN);
        // Templates are verified through an instance.
        let name = unit.replace("@.", "@web1.");
        std::fs::write(dir.join(&name), text).unwrap();
        names.push(name);
    }
    names
}

fn systemd_analyze() -> Option<&'static str> {
    let ok = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some("systemd-analyze")
    } else if std::env::var_os("POOLGATE_SKIP_SYSTEMD_ANALYZE").is_some() {
        None
    } else {
        panic!("systemd-analyze is missing: apt-get install systemd (or set POOLGATE_SKIP_SYSTEMD_ANALYZE=1)");
    }
}

#[test]
fn units_verify_cleanly() {
    let Some(tool) = systemd_analyze() else {
        return;
    };
    let d = Dir::new("verify");
    let names = units_for_verify(&d.0);
    let out = Command::new(tool)
        .arg("verify")
        .args(&names)
        .current_dir(&d.0)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Warnings (unknown keys, bad values) do not fail verify; none may name our units.
    for n in &names {
        assert!(!stderr.contains(n.as_str()), "{stderr}");
    }
    for n in &names {
        let text = std::fs::read_to_string(d.0.join(n)).unwrap();
        for needed in [
            "Type=notify",
            "NotifyAccess=main",
            "WatchdogSec=",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "RestartPreventExitStatus=78",
            "NoNewPrivileges=yes",
            "CapabilityBoundingSet=\n",
            "ProtectSystem=strict",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
            "SystemCallFilter=@system-service",
        ] {
            assert!(text.contains(needed), "{n} lacks {needed:?}");
        }
    }
}

#[test]
fn units_are_well_sandboxed() {
    let Some(tool) = systemd_analyze() else {
        return;
    };
    let d = Dir::new("security");
    for name in units_for_verify(&d.0) {
        let out = Command::new(tool)
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&name)
            .current_dir(&d.0)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let level: f64 = stdout
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no exposure level for {name}:\n{stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        assert!(
            level <= 2.0,
            "{name}: exposure {level} (want ≤ 2.0)\n{stdout}"
        );
    }
}
