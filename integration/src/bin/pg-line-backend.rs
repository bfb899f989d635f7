//! `pg-line-backend`: a killable line-protocol server for failover tests. One request
//! line, one reply line; replies depend only on the request (never on the server), so a
//! session replayed on another instance gets the same answers. Prints `listening <port>`
//! on stdout once it accepts connections, then `req <line>` for every request it reads.
//!
//! Requests: `SQ <n>` → n², `ECHO <text>` → text, `SLEEP <ms> <text>` → text after ms
//! milliseconds, `WHO` → the instance name (the only server-specific answer; tests use
//! it to find the serving backend), anything else → `ERR`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use clap::Parser;

#[derive(Parser)]
#[command(about = "A line-protocol test backend with deterministic answers")]
struct Args {
    /// TCP port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Instance name (answer to WHO).
    #[arg(long, default_value = "backend")]
    name: String,
}

/// The reply line (without terminator) to one request line.
fn answer(line: &str, name: &str) -> String {
    let mut it = line.splitn(2, ' ');
    let cmd = it.next().unwrap_or("");
    let rest = it.next().unwrap_or("");
    match cmd {
        "SQ" => rest
            .trim()
            .parse::<u64>()
            .map(|n| n.wrapping_mul(n).to_string())
            .unwrap_or_else(|_| "ERR".into()),
        "ECHO" => rest.to_string(),
        "SLEEP" => {
            let mut p = rest.splitn(2, ' ');
            let ms = p.next().and_then(|m| m.parse::<u64>().ok()).unwrap_or(0);
            std::thread::sleep(Duration::from_millis(ms.min(60_000)));
            p.next().unwrap_or("").to_string()
        }
        "WHO" => name.to_string(),
        _ => "ERR".into(),
    }
}

fn serve(stream: TcpStream, name: String) {
    let _ = stream.set_nodelay(true);
    let Ok(mut w) = stream.try_clone() else {
        return;
    };
    let r = BufReader::new(stream);
    for line in r.lines() {
        let Ok(line) = line else { return };
        // Tests read this to see which instance serves a session.
        println!("req {line}");
        let reply = answer(line.trim_end_matches('\r'), &name);
        if w.write_all(format!("{reply}\n").as_bytes()).is_err() {
            return;
        }
    }
}

fn main() -> std::io::Result<()> {
    let a = Args::parse();
    let l = TcpListener::bind(("127.0.0.1", a.port))?;
    println!("listening {}", l.local_addr()?.port());
    std::io::stdout().flush()?;
    for s in l.incoming() {
        let Ok(s) = s else { continue };
        let name = a.name.clone();
        std::thread::spawn(move || serve(s, name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::answer;

    #[test]
    fn answers_depend_on_the_request_only() {
        assert_eq!(answer("SQ 12", "a"), "144");
        assert_eq!(answer("SQ x", "a"), "ERR");
        assert_eq!(answer("ECHO hi there", "a"), "hi there");
        assert_eq!(answer("SLEEP 1 done", "a"), "done");
        assert_eq!(answer("WHO", "b1"), "b1");
        assert_eq!(answer("NOPE", "a"), "ERR");
    }
}
