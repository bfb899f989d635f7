//! One destination transport address of the peer: RTO estimation (RFC 9260 §6.3),
//! congestion window (§7.2), error counting and heartbeat state (§8.3).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::AssociationConfig;

/// State of one path.
#[derive(Debug)]
pub(crate) struct Path {
    pub addr: SocketAddr,
    /// Local address we last heard this peer address on, for the driver.
    pub local: Option<SocketAddr>,
    pub pmtu: usize,
    /// Confirmed by a handshake packet or a heartbeat ack (RFC 9260 §5.4).
    pub confirmed: bool,
    pub active: bool,
    pub errors: u32,
    pub srtt: Option<Duration>,
    pub rttvar: Duration,
    pub rto: Duration,
    pub cwnd: usize,
    pub ssthresh: usize,
    pub partial_bytes_acked: usize,
    /// Bytes of DATA outstanding on this path.
    pub flight: usize,
    pub t3: Option<Instant>,
    pub hb_due: Option<Instant>,
    /// Nonce and send time of the unanswered heartbeat.
    pub hb_outstanding: Option<(u64, Instant)>,
    pub hb_send_now: bool,
    pub last_data_sent: Option<Instant>,
}

impl Path {
    pub fn new(addr: SocketAddr, cfg: &AssociationConfig, confirmed: bool) -> Path {
        let pmtu = cfg
            .pmtu_overrides
            .iter()
            .find(|(ip, _)| *ip == addr.ip())
            .map_or(cfg.pmtu, |(_, m)| *m);
        Path {
            addr,
            local: None,
            pmtu,
            confirmed,
            active: true,
            errors: 0,
            srtt: None,
            rttvar: Duration::ZERO,
            rto: cfg.rto_initial,
            cwnd: initial_cwnd(pmtu),
            ssthresh: usize::MAX,
            partial_bytes_acked: 0,
            flight: 0,
            t3: None,
            hb_due: None,
            hb_outstanding: None,
            hb_send_now: false,
            last_data_sent: None,
        }
    }

    /// Takes an RTT sample (RFC 9260 §6.3.1, alpha 1/8, beta 1/4).
    pub fn rtt_sample(&mut self, rtt: Duration, cfg: &AssociationConfig) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(rtt);
                self.rttvar = self.rttvar * 3 / 4 + diff / 4;
                self.srtt = Some(srtt * 7 / 8 + rtt / 8);
            }
        }
        // G (clock granularity) is taken as 1 ms.
        let var = (self.rttvar * 4).max(Duration::from_millis(1));
        self.rto = (self.srtt.unwrap_or(rtt) + var).clamp(cfg.rto_min, cfg.rto_max);
    }

    /// Doubles the RTO after a timeout (RFC 9260 §6.3.3 E2).
    pub fn back_off(&mut self, cfg: &AssociationConfig) {
        self.rto = (self.rto * 2).min(cfg.rto_max);
    }

    /// Reacts to a T3-rtx expiry (RFC 9260 §7.2.3).
    pub fn on_t3_loss(&mut self) {
        self.ssthresh = (self.cwnd / 2).max(4 * self.pmtu);
        self.cwnd = self.pmtu;
        self.partial_bytes_acked = 0;
    }

    /// Reacts to a fast retransmit (RFC 9260 §7.2.4).
    pub fn on_fast_loss(&mut self) {
        self.ssthresh = (self.cwnd / 2).max(4 * self.pmtu);
        self.cwnd = self.ssthresh;
        self.partial_bytes_acked = 0;
    }

    /// Grows the window for newly acknowledged bytes (RFC 9260 §7.2.1, §7.2.2).
    pub fn on_ack(&mut self, acked: usize, flight_before: usize, cum_advanced: bool) {
        // Only grow when the window was in use, so an idle sender cannot inflate it.
        let full = flight_before + self.pmtu >= self.cwnd;
        if self.cwnd <= self.ssthresh {
            if cum_advanced && full {
                self.cwnd += acked.min(self.pmtu);
            }
        } else {
            self.partial_bytes_acked += acked;
            if self.partial_bytes_acked >= self.cwnd && full {
                self.partial_bytes_acked -= self.cwnd;
                self.cwnd += self.pmtu;
            }
        }
    }

    /// Space for DATA in a packet to this path after `used` bytes.
    pub fn can_send_data(&self) -> bool {
        self.flight < self.cwnd
    }
}

/// Initial congestion window (RFC 9260 §7.2.1).
pub(crate) fn initial_cwnd(pmtu: usize) -> usize {
    (4 * pmtu).min((2 * pmtu).max(4404))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rto_follows_rfc_formula_and_bounds() {
        let cfg = AssociationConfig::default();
        let mut p = Path::new("127.0.0.1:1".parse().unwrap(), &cfg, true);
        assert_eq!(p.rto, cfg.rto_initial);
        p.rtt_sample(Duration::from_millis(100), &cfg);
        // srtt 100, rttvar 50 -> rto 300 ms.
        assert_eq!(p.rto, Duration::from_millis(300));
        p.rtt_sample(Duration::from_millis(100), &cfg);
        // rttvar 37.5 -> 100 + 150 = 250 ms.
        assert_eq!(p.rto, Duration::from_millis(250));
        for _ in 0..50 {
            p.rtt_sample(Duration::from_micros(10), &cfg);
        }
        assert_eq!(p.rto, cfg.rto_min);
        for _ in 0..20 {
            p.back_off(&cfg);
        }
        assert_eq!(p.rto, cfg.rto_max);
    }

    #[test]
    fn congestion_window_phases() {
        let cfg = AssociationConfig::default();
        let mut p = Path::new("127.0.0.1:1".parse().unwrap(), &cfg, true);
        assert_eq!(p.cwnd, 4404);
        p.ssthresh = 10_000;
        p.on_ack(3000, p.cwnd, true);
        assert_eq!(p.cwnd, 4404 + 1472, "slow start grows by at most one MTU");
        p.on_ack(3000, 0, true);
        assert_eq!(p.cwnd, 5876, "no growth when the window was not used");
        p.cwnd = 20_000;
        p.on_ack(15_000, 20_000, true);
        assert_eq!(p.cwnd, 20_000);
        p.on_ack(6_000, 20_000, true);
        assert_eq!(
            p.cwnd, 21_472,
            "congestion avoidance adds one MTU per window"
        );
        p.on_fast_loss();
        assert_eq!((p.cwnd, p.ssthresh), (10_736, 10_736));
        p.on_t3_loss();
        assert_eq!((p.cwnd, p.ssthresh), (1472, 5888));
    }
}
