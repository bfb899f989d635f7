//! systemd service notification (`sd_notify`), our own small implementation.
//!
//! A `Type=notify` unit learns our state from datagrams sent to `$NOTIFY_SOCKET`:
//! `READY=1` once serving, `RELOADING=1` (with `MONOTONIC_USEC`) while re-reading
//! configuration, `STOPPING=1` when draining, `WATCHDOG=1` as a liveness ping
//! (at least every `$WATCHDOG_USEC`/2), and `STATUS=` free text for `systemctl status`.
//! Without `$NOTIFY_SOCKET` every call does nothing, so roles can call these
//! unconditionally.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

/// Where notifications go.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// A path in the file system.
    Path(PathBuf),
    /// A Linux abstract-namespace name (`@name` in `$NOTIFY_SOCKET`).
    Abstract(Vec<u8>),
}

/// A handle sending notifications to the service manager (or nowhere).
#[derive(Clone, Debug)]
pub struct Notifier {
    target: Option<Target>,
}

/// Errors sending a notification.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `$NOTIFY_SOCKET` is set but not an absolute path or `@name`.
    #[error("NOTIFY_SOCKET `{0}` is neither an absolute path nor @abstract")]
    BadAddress(String),
    /// A state field contains a newline (it would split into two assignments).
    #[error("notification field contains a newline")]
    Newline,
    /// Sending the datagram failed.
    #[error("sending to the notify socket failed: {0}")]
    Io(#[from] io::Error),
}

impl Notifier {
    /// A notifier for `$NOTIFY_SOCKET`; inactive when it is unset or empty.
    pub fn from_env() -> Result<Notifier, NotifyError> {
        match std::env::var_os("NOTIFY_SOCKET") {
            None => Ok(Notifier::disabled()),
            Some(v) if v.is_empty() => Ok(Notifier::disabled()),
            Some(v) => Notifier::new(&v.to_string_lossy()),
        }
    }

    /// A notifier for an explicit address: an absolute path or `@abstract-name`.
    pub fn new(address: &str) -> Result<Notifier, NotifyError> {
        let target = if let Some(name) = address.strip_prefix('@') {
            Target::Abstract(name.as_bytes().to_vec())
        } else if address.starts_with('/') {
            Target::Path(PathBuf::from(address))
        } else {
            return Err(NotifyError::BadAddress(address.to_string()));
        };
        Ok(Notifier {
            target: Some(target),
        })
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier { target: None }
    }

    /// Whether notifications go anywhere.
    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// Send raw `KEY=VALUE` lines in one datagram.
    pub fn send(&self, fields: &[(&str, &str)]) -> Result<(), NotifyError> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        let mut msg = String::new();
        for (k, v) in fields {
            if k.contains('\n') || v.contains('\n') {
                return Err(NotifyError::Newline);
            }
            msg.push_str(k);
            msg.push('=');
            msg.push_str(v);
            msg.push('\n');
        }
        let sock = UnixDatagram::unbound()?;
        match target {
            Target::Path(p) => {
                sock.send_to(msg.as_bytes(), p)?;
            }
            Target::Abstract(name) => send_abstract(&sock, name, msg.as_bytes())?,
        }
        Ok(())
    }

    /// `READY=1`: startup finished, serving.
    pub fn ready(&self) -> Result<(), NotifyError> {
        self.send(&[("READY", "1")])
    }

    /// `RELOADING=1` with `MONOTONIC_USEC` (as `Type=notify-reload` requires);
    /// send [`Notifier::ready`] when the reload is done.
    pub fn reloading(&self) -> Result<(), NotifyError> {
        let usec = monotonic_usec().to_string();
        self.send(&[("RELOADING", "1"), ("MONOTONIC_USEC", &usec)])
    }

    /// `STOPPING=1`: draining towards exit.
    pub fn stopping(&self) -> Result<(), NotifyError> {
        self.send(&[("STOPPING", "1")])
    }

    /// `WATCHDOG=1`: still alive.
    pub fn watchdog(&self) -> Result<(), NotifyError> {
        self.send(&[("WATCHDOG", "1")])
    }

    /// `STATUS=...`: one line for `systemctl status` (newlines become spaces).
    pub fn status(&self, text: &str) -> Result<(), NotifyError> {
        let line = text.replace('\n', " ");
        self.send(&[("STATUS", &line)])
    }
}

#[cfg(target_os = "linux")]
fn send_abstract(sock: &UnixDatagram, name: &[u8], msg: &[u8]) -> io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    sock.send_to_addr(msg, &addr).map(|_| ())
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_sock: &UnixDatagram, _name: &[u8], _msg: &[u8]) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets are Linux-only",
    ))
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd compares reload times with.
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000) + (ts.tv_nsec as u64) / 1_000
}

/// The watchdog interval systemd expects pings within, if the watchdog is on for
/// this process: `$WATCHDOG_USEC`, honouring `$WATCHDOG_PID` when set.
pub fn watchdog_timeout() -> Option<Duration> {
    watchdog_timeout_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// [`watchdog_timeout`] from explicit values (testable without touching the environment).
pub fn watchdog_timeout_from(
    usec: Option<&str>,
    pid: Option<&str>,
    my_pid: u32,
) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != my_pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

/// Ping the watchdog every half `timeout` until the task is dropped or aborted.
///
/// The ping runs on the runtime like all other work, so a wedged runtime stops
/// the pings and systemd restarts us — which is the point.
pub fn spawn_watchdog(notifier: Notifier, timeout: Duration) -> tokio::task::JoinHandle<()> {
    let period = (timeout / 2).max(Duration::from_millis(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = notifier.watchdog() {
                tracing::warn!(error = %e, "watchdog notification failed");
            }
        }
    })
}

/// Start the watchdog task when systemd asked for one (`WatchdogSec=`); `None` otherwise.
pub fn spawn_watchdog_from_env(notifier: &Notifier) -> Option<tokio::task::JoinHandle<()>> {
    if !notifier.is_active() {
        return None;
    }
    watchdog_timeout().map(|t| spawn_watchdog(notifier.clone(), t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert!(Notifier::new("/run/systemd/notify").unwrap().is_active());
        assert!(Notifier::new("@abstract").unwrap().is_active());
        assert!(matches!(
            Notifier::new("relative"),
            Err(NotifyError::BadAddress(_))
        ));
        assert!(!Notifier::disabled().is_active());
        assert!(Notifier::disabled().ready().is_ok());
    }

    #[test]
    fn watchdog_env_rules() {
        assert_eq!(
            watchdog_timeout_from(Some("2000000"), None, 7),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            watchdog_timeout_from(Some("2000000"), Some("7"), 7),
            Some(Duration::from_secs(2))
        );
        assert_eq!(watchdog_timeout_from(Some("2000000"), Some("8"), 7), None);
        assert_eq!(watchdog_timeout_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_timeout_from(Some("x"), None, 7), None);
        assert_eq!(watchdog_timeout_from(None, Some("7"), 7), None);
    }

    #[test]
    fn newlines_are_refused_in_fields() {
        let n = Notifier::new("/nonexistent/socket").unwrap();
        assert!(matches!(
            n.send(&[("STATUS", "a\nb")]),
            Err(NotifyError::Newline)
        ));
    }

    #[test]
    fn monotonic_clock_advances() {
        let a = monotonic_usec();
        std::thread::sleep(Duration::from_millis(2));
        assert!(monotonic_usec() >= a + 1000);
    }
}
