//! `poolgate check` run as a process: every kind of configuration error is reported
//! with file, line, column, key and reason, all at once, with the right exit code.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_poolgate");

/// A temporary directory removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("poolgate-check-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn secret(&self, name: &str, bytes: &[u8], mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        // The test's own environment must not leak configuration in.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap()
}

fn check(file: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["check", "--config", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = run(&args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The stderr line about `key`, which must exist.
fn line_for<'a>(stderr: &'a str, key: &str) -> &'a str {
    let needle = format!("key `{key}`");
    stderr
        .lines()
        .find(|l| l.contains(&needle))
        .unwrap_or_else(|| panic!("no diagnostic for {key} in:\n{stderr}"))
}

#[test]
fn valid_file_passes() {
    let d = Dir::new("valid");
    let key = d.secret("pool.key", &[7u8; 32], 0o600);
    let f = d.file(
        "ppe.toml",
        &format!(
            "[ppe]\npool = \"web\"\n[[ppe.key]]\nid = 1\nkey_file = \"{}\"\n",
            key.display()
        ),
    );
    let (code, stdout, stderr) = check(&f, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("ok: ppe configuration is valid (0 warning(s))"),
        "{stdout}"
    );
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn unknown_key_wrong_type_and_bad_address_all_reported_with_positions() {
    let d = Dir::new("types");
    let f = d.file(
        "registrar.toml",
        "[registrar]\nlisten = [\"127.0.0.1:9899\", \"localhost:9899\"]\nmax_bad_pe_report = \"three\"\ncolour = \"blue\"\n\n[registrar.keepalive]\ninterval = \"1 second\"\n",
    );
    let (code, _, stderr) = check(&f, &[]);
    assert_eq!(code, 1, "{stderr}");
    let file = f.display().to_string();

    let addr = line_for(&stderr, "registrar.listen[1]");
    assert!(addr.starts_with(&format!("error: {file}:2:29: ")), "{addr}");
    assert!(addr.contains("not an IP address and port"), "{addr}");

    let ty = line_for(&stderr, "registrar.max_bad_pe_report");
    assert!(ty.starts_with(&format!("error: {file}:3:21: ")), "{ty}");
    assert!(ty.contains("invalid type: string \"three\""), "{ty}");

    let unknown = line_for(&stderr, "registrar.colour");
    assert!(
        unknown.starts_with(&format!("error: {file}:4:1: ")),
        "{unknown}"
    );
    assert!(unknown.contains("unknown key `colour`"), "{unknown}");

    let dur = line_for(&stderr, "registrar.keepalive.interval");
    assert!(dur.starts_with(&format!("error: {file}:7:12: ")), "{dur}");
    assert!(dur.contains("not a duration"), "{dur}");

    assert!(stderr.contains("4 error(s), 0 warning(s)"), "{stderr}");
}

#[test]
fn syntax_error_names_line_and_column() {
    let d = Dir::new("syntax");
    let f = d.file("ppu.toml", "[ppu]\nregistrars = [\"127.0.0.1:9899\"\n");
    let (code, _, stderr) = check(&f, &["--role", "ppu"]);
    assert_eq!(code, 1);
    let first = stderr.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("error: {}:3:", f.display()))
            || first.starts_with(&format!("error: {}:2:", f.display())),
        "{stderr}"
    );
    assert!(first.contains("not valid TOML"), "{stderr}");
}

#[test]
fn secrets_missing_short_and_loose() {
    let d = Dir::new("secrets");
    let short = d.secret("short.key", &[1u8; 16], 0o600);
    let loose = d.secret("loose.key", &[2u8; 32], 0o644);
    let f = d.file(
        "ppe.toml",
        &format!(
            "[ppe]\npool = \"web\"\n\n[[ppe.key]]\nid = 1\nkey_file = \"{}\"\n\n[[ppe.key]]\nid = 2\nkey_file = \"missing.key\"\n\n[[ppe.key]]\nid = 3\nkey_file = \"{}\"\n\n[[ppe.key]]\nid = 4\nkey = \"00ff\"\n",
            short.display(),
            loose.display()
        ),
    );
    let (code, _, stderr) = check(&f, &[]);
    assert_eq!(code, 1, "{stderr}");
    let file = f.display().to_string();
    let s = line_for(&stderr, "ppe.key[0].key_file");
    assert!(
        s.starts_with(&format!("error: {file}:6:12: ")) && s.contains("16 bytes; at least 32"),
        "{s}"
    );
    let m = line_for(&stderr, "ppe.key[1].key_file");
    // Relative paths are relative to the file naming them.
    assert!(
        m.contains("cannot read secret file")
            && m.contains(&d.0.join("missing.key").display().to_string()),
        "{m}"
    );
    let w = line_for(&stderr, "ppe.key[2].key_file");
    assert!(
        w.starts_with(&format!("warning: {file}:14:12: ")) && w.contains("mode 644"),
        "{w}"
    );
    let h = line_for(&stderr, "ppe.key[3].key");
    assert!(h.contains("2 bytes; at least 32"), "{h}");
    assert!(stderr.contains("3 error(s), 1 warning(s)"), "{stderr}");
}

#[test]
fn loose_secret_alone_is_a_warning_not_a_failure() {
    let d = Dir::new("warn");
    let loose = d.secret("web.secret", b"correct horse battery staple\n", 0o640);
    let f = d.file(
        "registrar.toml",
        &format!(
            "[registrar]\n[[registrar.pool]]\nhandle = \"web\"\nsecret_file = \"{}\"\n",
            loose.display()
        ),
    );
    let (code, stdout, stderr) = check(&f, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        line_for(&stderr, "registrar.pool[0].secret_file").starts_with("warning: "),
        "{stderr}"
    );
    assert!(stdout.contains("1 warning(s)"), "{stdout}");
}

#[test]
fn keepalive_timeout_longer_than_interval() {
    let d = Dir::new("keepalive");
    let f = d.file(
        "ppu.toml",
        "[ppu.session]\nkeepalive_interval = \"500ms\"\nkeepalive_timeout = \"2s\"\n",
    );
    let (code, _, stderr) = check(&f, &[]);
    assert_eq!(code, 1, "{stderr}");
    let l = line_for(&stderr, "ppu.session.keepalive_timeout");
    assert!(
        l.starts_with(&format!("error: {}:3:21: ", f.display())),
        "{l}"
    );
    assert!(
        l.contains("(2s) is longer than the interval (500ms)"),
        "{l}"
    );
}

#[test]
fn duplicate_listeners_and_tls_mistakes() {
    let d = Dir::new("listeners");
    let f = d.file(
        "ppu.toml",
        "[ppu]\n\n[[ppu.listener]]\nname = \"web\"\nkind = \"tcp\"\nbind = \"127.0.0.1:8000\"\npool = \"web\"\ntls_key = \"k.pem\"\n\n[[ppu.listener]]\nname = \"web\"\nkind = \"https\"\nbind = \"127.0.0.1:8000\"\npool = \"web\"\n\n[[ppu.listener]]\nname = \"other\"\nkind = \"quic\"\nbind = \"127.0.0.1:8001\"\npool = \"web\"\n\n[[ppu.listener]]\nkind = \"tcp\"\nbind = \"127.0.0.1:8002\"\npool = \"web\"\n",
    );
    let (code, _, stderr) = check(&f, &[]);
    assert_eq!(code, 1, "{stderr}");
    let file = f.display().to_string();
    let n = line_for(&stderr, "ppu.listener[1].name");
    assert!(
        n.starts_with(&format!("error: {file}:11:8: "))
            && n.contains("already used by listener[0]"),
        "{n}"
    );
    let b = line_for(&stderr, "ppu.listener[1].bind");
    assert!(
        b.starts_with(&format!("error: {file}:13:8: ")) && b.contains("already bound"),
        "{b}"
    );
    assert!(
        line_for(&stderr, "ppu.listener[0].tls_key").contains("not tls or https"),
        "{stderr}"
    );
    assert!(
        stderr.contains("a TLS listener needs `tls_cert`"),
        "{stderr}"
    );
    assert!(
        line_for(&stderr, "ppu.listener[2].kind").contains("unknown variant `quic`"),
        "{stderr}"
    );
    // The nameless listener is reported at its table header.
    let missing = line_for(&stderr, "ppu.listener[3]");
    assert!(
        missing.starts_with(&format!("error: {file}:22:1: "))
            && missing.contains("missing key `name`"),
        "{missing}"
    );
}

#[test]
fn role_is_inferred_or_must_match() {
    let d = Dir::new("role");
    let f = d.file("x.toml", "[ppu]\n");
    let (code, stdout, _) = check(&f, &[]);
    assert_eq!(code, 0);
    assert!(stdout.contains("ppu configuration"), "{stdout}");
    let (code, _, stderr) = check(&f, &["--role", "registrar"]);
    assert_eq!(code, 1);
    assert!(
        line_for(&stderr, "ppu")
            .contains("ppu table, but the configuration is for the registrar role"),
        "{stderr}"
    );
    let none = d.file("none.toml", "a = 1\n");
    let (code, _, stderr) = check(&none, &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("use --role"), "{stderr}");
}

#[test]
fn overrides_from_set_and_environment_are_checked_and_named() {
    let d = Dir::new("overrides");
    let f = d.file("ppu.toml", "[ppu]\n");
    let out = Command::new(BIN)
        .args([
            "check",
            "--config",
            f.to_str().unwrap(),
            "--set",
            "session.failover_max_attempts=0",
        ])
        .env_clear()
        .env("POOLGATE_PPU__RESOLUTION__TIMEOUT", "soon")
        .env("POOLGATE_REGISTRAR__LISTEN", "ignored-for-ppu")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let env = line_for(&stderr, "ppu.resolution.timeout");
    assert!(
        env.starts_with("error: environment variable POOLGATE_PPU__RESOLUTION__TIMEOUT: "),
        "{env}"
    );
    let set = line_for(&stderr, "ppu.session.failover_max_attempts");
    assert!(
        set.starts_with("error: --set session.failover_max_attempts=0: ")
            && set.contains("at least 1"),
        "{set}"
    );
    assert!(stderr.contains("2 error(s)"), "{stderr}");
}

#[test]
fn several_files_layer_later_wins() {
    let d = Dir::new("layers");
    let a = d.file(
        "a.toml",
        "[ppu.session]\nkeepalive_interval = \"100ms\"\nkeepalive_timeout = \"100ms\"\n",
    );
    let b = d.file("b.toml", "[ppu.session]\nkeepalive_timeout = \"300ms\"\n");
    let out = run(&[
        "check",
        "-c",
        a.to_str().unwrap(),
        "-c",
        b.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    let l = line_for(&stderr, "ppu.session.keepalive_timeout");
    assert!(
        l.starts_with(&format!("error: {}:2:21: ", b.display()))
            && l.contains("(300ms) is longer than the interval (100ms)"),
        "{l}"
    );
    let ok = run(&[
        "check",
        "-c",
        b.to_str().unwrap(),
        "-c",
        a.to_str().unwrap(),
    ]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn role_subcommand_refuses_invalid_configuration_with_ex_config() {
    let d = Dir::new("role-invalid");
    let f = d.file("ppu.toml", "[ppu]\nbogus = 1\n");
    let out = run(&["ppu", "--config", f.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        line_for(&stderr, "ppu.bogus").contains("unknown key"),
        "{stderr}"
    );
}

#[test]
fn status_reads_a_metrics_endpoint_or_reports_down() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        // `status` asks for the role's status document first; this role has none.
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"GET /status HTTP/1.1\r\n"));
        write!(
            s,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        drop(s);
        let (mut s, _) = listener.accept().unwrap();
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"GET /metrics HTTP/1.1\r\n"));
        let body = "# TYPE poolgate_up gauge\npoolgate_up 1\nother_metric 2\n";
        write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    let out = run(&["status", "--address", &addr.to_string()]);
    server.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("up: poolgate at") && stdout.contains("  poolgate_up 1"),
        "{stdout}"
    );
    assert!(!stdout.contains("other_metric"), "{stdout}");

    // Nothing listens on the port any more.
    let out = run(&[
        "status",
        "--address",
        &addr.to_string(),
        "--timeout",
        "500ms",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("down: "));
}

#[test]
fn json_logs_carry_configuration_errors_as_fields() {
    let d = Dir::new("json");
    let f = d.file(
        "ppu.toml",
        "[ppu]\nbogus = 1\n\n[ppu.session]\nkeepalive_timeout = \"5s\"\n",
    );
    let out = run(&[
        "--log-format",
        "json",
        "ppu",
        "--config",
        f.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {l}"))
        })
        .collect();
    let errors: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["message"] == "configuration error")
        .collect();
    assert_eq!(errors.len(), 2, "{stderr}");
    let bogus = errors
        .iter()
        .find(|e| e["key"] == "ppu.bogus")
        .expect("ppu.bogus reported");
    assert_eq!(bogus["level"], "ERROR");
    assert_eq!(bogus["location"], format!("{}:2:1", f.display()));
    assert!(bogus["reason"].as_str().unwrap().contains("unknown key"));
    assert!(errors
        .iter()
        .any(|e| e["key"] == "ppu.session.keepalive_timeout"));
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "configuration invalid" && e["errors"] == 2),
        "{stderr}"
    );
}

#[test]
fn transport_timers_windows_and_retransmissions_are_checked() {
    let d = Dir::new("transport");
    let f = d.file(
        "ppu.toml",
        "[ppu.transport]\nrto_min = \"2s\"\nrto_initial = \"500ms\"\nreceive_window = 1000\npath_max_retransmissions = 20\nsocket_buffer = \"big\"\n",
    );
    let (code, _, stderr) = check(&f, &["--set", "ppu.transport.heartbeat_interval=0s"]);
    assert_eq!(code, 1, "{stderr}");
    let file = f.display().to_string();

    let rto = line_for(&stderr, "ppu.transport.rto_initial");
    assert!(rto.starts_with(&format!("error: {file}:3:15: ")), "{rto}");
    assert!(
        rto.contains("within rto_min and rto_max (2s to 1m)"),
        "{rto}"
    );

    let win = line_for(&stderr, "ppu.transport.receive_window");
    assert!(win.starts_with(&format!("error: {file}:4:18: ")), "{win}");
    assert!(win.contains("262144 to 268435456 bytes"), "{win}");

    let ty = line_for(&stderr, "ppu.transport.socket_buffer");
    assert!(ty.starts_with(&format!("error: {file}:6:17: ")), "{ty}");

    let hb = line_for(&stderr, "ppu.transport.heartbeat_interval");
    assert!(hb.contains("--set"), "{hb}");
    assert!(hb.contains("must be longer than zero"), "{hb}");

    let path = line_for(&stderr, "ppu.transport.path_max_retransmissions");
    assert!(
        path.starts_with(&format!("warning: {file}:5:28: ")),
        "{path}"
    );
    assert!(
        path.contains("larger than max_retransmissions (10)"),
        "{path}"
    );

    assert!(stderr.contains("4 error(s), 1 warning(s)"), "{stderr}");
}

#[test]
fn worker_threads_are_bounded_with_their_position() {
    let d = Dir::new("threads");
    let f = d.file("ppe.toml", "[ppe]\nthreads = 5000\n");
    let (code, _, stderr) = check(&f, &[]);
    assert_eq!(code, 1, "{stderr}");
    let file = f.display().to_string();
    let t = line_for(&stderr, "ppe.threads");
    assert!(t.starts_with(&format!("error: {file}:2:11: ")), "{t}");
    assert!(t.contains("at most 1024 worker threads"), "{t}");

    let f = d.file("registrar.toml", "[registrar]\nthreads = 3\n");
    let (code, _, stderr) = check(&f, &[]);
    assert_eq!(code, 0, "{stderr}");
}
