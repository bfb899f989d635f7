//! `poolgate check` (validate configuration) and `poolgate status` (ask a running instance).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::cli::{CheckArgs, StatusArgs};
use crate::config::{self, Diagnostic, Role, Sources};

/// Exit code: the configuration is invalid (sysexits EX_CONFIG); units use it in
/// `RestartPreventExitStatus=` so a broken file does not restart in a loop.
pub const EXIT_CONFIG: u8 = 78;
/// Exit code of `status` when the instance does not answer (LSB "not running").
pub const EXIT_NOT_RUNNING: u8 = 3;

/// Print diagnostics to stderr, one per line, then a summary line.
pub fn print_diagnostics(diags: &[Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let _ = writeln!(err, "{d}");
    }
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let warnings = diags.len() - errors;
    if errors > 0 {
        let _ = writeln!(err, "{errors} error(s), {warnings} warning(s)");
    }
}

fn pick_role(explicit: Option<Role>, files: &[std::path::PathBuf]) -> Result<Role, String> {
    match explicit {
        Some(r) => Ok(r),
        None => config::infer_role(files),
    }
}

/// `poolgate check`: print every problem; exit 0 when usable (warnings allowed), 1 otherwise.
pub fn run_check(args: &CheckArgs) -> ExitCode {
    let role = match pick_role(args.role.map(Into::into), &args.config) {
        Ok(r) => r,
        Err(why) => {
            // The files may not parse at all; show that rather than only "no role".
            let diags: Vec<Diagnostic> = args.config.iter().filter_map(|f| unparsable(f)).collect();
            print_diagnostics(&diags);
            eprintln!("error: {why}");
            return ExitCode::from(1);
        }
    };
    let sources = Sources::from_process(args.config.clone(), args.set.clone());
    match config::load_any(role, &sources) {
        Ok(loaded) => {
            print_diagnostics(&loaded.warnings);
            println!(
                "ok: {} configuration is valid ({} warning(s))",
                role,
                loaded.warnings.len()
            );
            ExitCode::SUCCESS
        }
        Err(diags) => {
            print_diagnostics(&diags);
            ExitCode::from(1)
        }
    }
}

/// A diagnostic for a file that cannot be read or parsed, if so.
fn unparsable(file: &std::path::Path) -> Option<Diagnostic> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            return Some(Diagnostic::error(
                Some(config::Location::whole(std::sync::Arc::new(
                    config::Source::File(file.to_path_buf()),
                ))),
                "",
                format!("cannot read configuration file: {e}"),
            ))
        }
    };
    config::tree::Node::parse(
        &text,
        std::sync::Arc::new(config::Source::File(file.to_path_buf())),
    )
    .err()
}

/// `poolgate status`: fetch `/metrics` from a running instance and print its poolgate samples.
pub fn run_status(args: &StatusArgs) -> ExitCode {
    let addr = match &args.address {
        Some(a) => match a.to_socket_addrs().ok().and_then(|mut i| i.next()) {
            Some(addr) => addr,
            None => {
                eprintln!("error: --address `{a}` is not host:port");
                return ExitCode::from(2);
            }
        },
        None => {
            let role = match pick_role(args.role.map(Into::into), &args.config) {
                Ok(r) => r,
                Err(why) => {
                    eprintln!("error: {why}");
                    return ExitCode::from(2);
                }
            };
            let sources = Sources::from_process(args.config.clone(), Vec::new());
            match config::load_any(role, &sources) {
                Ok(l) => {
                    let m = l.config.metrics();
                    if !m.enabled {
                        eprintln!("error: {role}.metrics.enabled is false; nothing to ask (use --address)");
                        return ExitCode::from(1);
                    }
                    m.listen.0
                }
                Err(diags) => {
                    print_diagnostics(&diags);
                    return ExitCode::from(EXIT_CONFIG);
                }
            }
        }
    };
    // Roles with a status document (the registrar's handlespace) answer /status.
    if let Ok(doc) = fetch_path(addr, "/status", args.timeout) {
        match serde_json::from_str::<serde_json::Value>(&doc) {
            Ok(v) if args.json => {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or(doc));
                return ExitCode::SUCCESS;
            }
            Ok(v) => {
                print!("{}", crate::status::render_table(&v));
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("error: {addr} answered /status with something that is not JSON: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    match fetch_metrics(addr, args.timeout) {
        Ok(body) if args.json => {
            let samples: Vec<&str> = body
                .lines()
                .filter(|l| l.starts_with("poolgate_"))
                .collect();
            println!(
                "{}",
                serde_json::json!({ "address": addr.to_string(), "up": true, "metrics": samples })
            );
            ExitCode::SUCCESS
        }
        Ok(body) => {
            println!("up: poolgate at {addr} answered");
            for line in body.lines().filter(|l| l.starts_with("poolgate_")) {
                println!("  {line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("down: no answer from {addr}: {e}");
            ExitCode::from(EXIT_NOT_RUNNING)
        }
    }
}

/// Largest metrics body `status` reads.
const MAX_STATUS_BODY: u64 = 4 * 1024 * 1024;

/// GET `/metrics` at `addr` within `timeout`; the body on a 200 answer.
pub fn fetch_metrics(addr: SocketAddr, timeout: Duration) -> std::io::Result<String> {
    fetch_path(addr, "/metrics", timeout)
}

/// GET `path` at `addr` within `timeout`; the body on a 200 answer.
pub fn fetch_path(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<String> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_write_timeout(Some(left()))?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: poolgate\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let mut s_limited = (&mut s).take(MAX_STATUS_BODY);
    loop {
        s_limited.get_ref().set_read_timeout(Some(left()))?;
        match s_limited.read(&mut buf)? {
            0 => break,
            n => raw.extend_from_slice(&buf[..n]),
        }
        if Instant::now() >= deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "answer too slow",
            ));
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer")
    })?;
    let status = head.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 200") && !status.starts_with("HTTP/1.0 200") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("answer `{status}`"),
        ));
    }
    Ok(body.to_string())
}
