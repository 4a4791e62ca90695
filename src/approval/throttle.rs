//! Refused approval attempts, per client IP: counted, audited up to a cap, then throttled.
//!
//! A wrong, expired, reused or tampered link is answered normally the first few times (a person may
//! have clicked an old email). Past `LIMIT` refusals from one IP within `WINDOW`, every approval request
//! from that IP gets 429 until the window ends, and stops being audited, so a guesser can neither try
//! many tokens nor flood the audit log. A global cap bounds audit rows from many addresses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Refusals allowed per IP per window before it is throttled.
pub const LIMIT: u32 = 10;
pub const WINDOW: Duration = Duration::from_secs(600);
/// Refusals audited per window from all addresses together.
const GLOBAL_AUDIT_CAP: u32 = 200;

#[derive(Clone, Default)]
pub struct Throttle {
    inner: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Window start, strikes (attempts that look like guessing), audited refusals.
    per_ip: HashMap<IpAddr, (Instant, u32, u32)>,
    global: Option<(Instant, u32)>,
}

/// Whether a refusal looks like guessing: an unknown token, a forged form, a cross-site post.
/// A valid link that is merely expired or already used (a person with an old email, a double click)
/// is audited but does not count towards throttling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strike {
    Counts,
    Free,
}

/// What to do with one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Write an audit event for it.
    pub audit: bool,
    /// How many refusals this IP has in the window, this one included.
    pub count: u32,
}

impl Throttle {
    /// Seconds until `ip` may try again, when it is throttled.
    pub fn blocked(&self, ip: IpAddr) -> Option<u64> {
        self.blocked_at(ip, Instant::now())
    }

    fn blocked_at(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        let state = self.inner.lock().expect("throttle lock");
        let (start, count, _) = state.per_ip.get(&ip)?;
        let elapsed = now.duration_since(*start);
        (*count >= LIMIT && elapsed < WINDOW).then(|| (WINDOW - elapsed).as_secs().max(1))
    }

    /// Counts a refusal from `ip`.
    pub fn refused(&self, ip: IpAddr, strike: Strike) -> Refusal {
        self.refused_at(ip, strike, Instant::now())
    }

    fn refused_at(&self, ip: IpAddr, strike: Strike, now: Instant) -> Refusal {
        let mut state = self.inner.lock().expect("throttle lock");
        if state.per_ip.len() > 10_000 {
            state.per_ip.retain(|_, (start, _, _)| now.duration_since(*start) < WINDOW);
        }
        let entry = state.per_ip.entry(ip).or_insert((now, 0, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0, 0);
        }
        if strike == Strike::Counts {
            entry.1 += 1;
        }
        entry.2 += 1;
        let (count, audited) = (entry.1, entry.2);
        let global = state.global.get_or_insert((now, 0));
        if now.duration_since(global.0) >= WINDOW {
            *global = (now, 0);
        }
        global.1 += 1;
        Refusal { audit: audited <= 2 * LIMIT && global.1 <= GLOBAL_AUDIT_CAP, count }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_throttled_after_the_limit_until_the_window_ends() {
        let t = Throttle::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let now = Instant::now();
        for i in 1..=LIMIT {
            assert_eq!(t.blocked_at(a, now), None, "attempt {i} is still answered");
            assert!(t.refused_at(a, Strike::Counts, now).audit);
        }
        assert!(t.blocked_at(a, now).is_some());
        for _ in 0..LIMIT {
            t.refused_at(a, Strike::Counts, now);
        }
        assert!(!t.refused_at(a, Strike::Counts, now).audit, "far past the limit: not audited");
        for _ in 0..3 * LIMIT {
            t.refused_at(b, Strike::Free, now);
        }
        assert_eq!(t.blocked_at(b, now), None, "old links and double clicks do not throttle");
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        assert_eq!(t.blocked_at(c, now), None, "other addresses are not affected");
        assert_eq!(t.blocked_at(a, now + WINDOW), None, "the window ends");
    }
}
