//! Process signals as events: SIGHUP asks for a reload, SIGTERM and SIGINT for a drain.
//!
//! Roles `select!` on [`Signals::recv`] next to their work. A second drain request
//! arrives as a second [`Signal::Drain`]; roles may treat it as "stop now".

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// What the operator (or systemd) asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGHUP (`systemctl reload`): re-read configuration, keep serving.
    Reload,
    /// SIGTERM (`systemctl stop`) or SIGINT (Ctrl-C): stop accepting, finish, exit.
    Drain,
}

/// A stream of [`Signal`]s; create it early, before announcing readiness.
pub struct Signals {
    rx: mpsc::Receiver<Signal>,
}

impl Signals {
    /// Install the handlers (needs a running tokio runtime). From now on these
    /// signals no longer kill the process; they arrive here instead.
    pub fn install() -> std::io::Result<Signals> {
        let (tx, rx) = mpsc::channel(16);
        for (kind, event) in [
            (SignalKind::hangup(), Signal::Reload),
            (SignalKind::terminate(), Signal::Drain),
            (SignalKind::interrupt(), Signal::Drain),
        ] {
            let mut stream = signal(kind)?;
            let tx = tx.clone();
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    // A full queue means the role is behind; coalescing repeats loses nothing.
                    if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(event) {
                        return;
                    }
                }
            });
        }
        Ok(Signals { rx })
    }

    /// The next signal; `None` only if every handler task has ended.
    pub async fn recv(&mut self) -> Option<Signal> {
        self.rx.recv().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn raise(sig: libc::c_int) {
        // SAFETY: sending a signal to our own pid has no memory-safety effects; the
        // handlers are installed before, so the default action does not run.
        let rc = unsafe { libc::kill(libc::getpid(), sig) };
        assert_eq!(rc, 0);
    }

    #[tokio::test]
    async fn hup_reloads_and_term_drains() {
        let mut s = Signals::install().unwrap();
        raise(libc::SIGHUP);
        let got = tokio::time::timeout(Duration::from_secs(5), s.recv())
            .await
            .unwrap();
        assert_eq!(got, Some(Signal::Reload));
        raise(libc::SIGTERM);
        let got = tokio::time::timeout(Duration::from_secs(5), s.recv())
            .await
            .unwrap();
        assert_eq!(got, Some(Signal::Drain));
    }
}
