//! A probe's state with hysteresis: DOWN only after `retries` + 1 failures in a row, RECOVERY only
//! after `recover` successes in a row, SLOW only after `retries` + 1 slow answers in a row. One flaky
//! answer never opens or closes an incident.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProbeState {
    /// No answer judged yet (just started).
    Unknown,
    Up,
    Slow,
    Down,
}

impl ProbeState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeState::Unknown => "unknown",
            ProbeState::Up => "up",
            ProbeState::Slow => "slow",
            ProbeState::Down => "down",
        }
    }

    pub fn parse(text: &str) -> Self {
        match text {
            "up" | "recovery" => ProbeState::Up,
            "slow" => ProbeState::Slow,
            "down" => ProbeState::Down,
            _ => ProbeState::Unknown,
        }
    }
}

/// What a new observation changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Down,
    Recovered,
    Slow,
    NotSlow,
}

#[derive(Debug, Clone)]
pub struct Tracker {
    state: ProbeState,
    failures: u32,
    successes: u32,
    slows: u32,
}

impl Tracker {
    pub fn new(state: ProbeState) -> Self {
        Self { state, failures: 0, successes: 0, slows: 0 }
    }

    pub fn state(&self) -> ProbeState {
        self.state
    }

    /// Feeds one check's result (`ok`: the answer was right; `slow`: it took longer than the threshold).
    pub fn observe(&mut self, ok: bool, slow: bool, retries: u32, recover: u32) -> Option<Change> {
        if !ok {
            self.successes = 0;
            self.slows = 0;
            self.failures += 1;
            if self.state != ProbeState::Down && self.failures > retries {
                self.state = ProbeState::Down;
                return Some(Change::Down);
            }
            return None;
        }
        self.failures = 0;
        if self.state == ProbeState::Down {
            self.successes += 1;
            if self.successes >= recover.max(1) {
                self.successes = 0;
                self.slows = 0;
                self.state = if slow { ProbeState::Slow } else { ProbeState::Up };
                return Some(Change::Recovered);
            }
            return None;
        }
        if slow {
            self.slows += 1;
            if self.state != ProbeState::Slow && self.slows > retries {
                self.state = ProbeState::Slow;
                return Some(Change::Slow);
            }
            if self.state == ProbeState::Unknown {
                self.state = ProbeState::Up;
            }
            return None;
        }
        self.slows = 0;
        let was_slow = self.state == ProbeState::Slow;
        self.state = ProbeState::Up;
        was_slow.then_some(Change::NotSlow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (ok, slow) sequences and the changes they must produce, with retries = 1 and recover = 2.
    #[test]
    fn hysteresis_table() {
        type Case<'a> = (&'a str, &'a [(bool, bool)], &'a [Option<Change>]);
        let cases: [Case; 6] = [
            ("one failure is not DOWN", &[(true, false), (false, false), (true, false)], &[None, None, None]),
            (
                "two failures in a row are DOWN, once",
                &[(false, false), (false, false), (false, false)],
                &[None, Some(Change::Down), None],
            ),
            (
                "RECOVERY needs two successes in a row",
                &[(false, false), (false, false), (true, false), (false, false), (true, false), (true, false)],
                &[None, Some(Change::Down), None, None, None, Some(Change::Recovered)],
            ),
            ("one slow answer is not SLOW", &[(true, true), (true, false)], &[None, None]),
            (
                "two slow answers are SLOW, then normal again",
                &[(true, true), (true, true), (true, true), (true, false)],
                &[None, Some(Change::Slow), None, Some(Change::NotSlow)],
            ),
            (
                "SLOW then failing is DOWN",
                &[(true, true), (true, true), (false, false), (false, false)],
                &[None, Some(Change::Slow), None, Some(Change::Down)],
            ),
        ];
        for (why, inputs, expected) in cases {
            let mut t = Tracker::new(ProbeState::Unknown);
            let got: Vec<_> = inputs.iter().map(|(ok, slow)| t.observe(*ok, *slow, 1, 2)).collect();
            assert_eq!(got, expected, "{why}");
        }
    }

    #[test]
    fn a_probe_found_down_at_start_recovers_and_does_not_reopen() {
        let mut t = Tracker::new(ProbeState::Down);
        assert_eq!(t.observe(true, false, 0, 1), Some(Change::Recovered));
        assert_eq!(t.state(), ProbeState::Up);
        assert_eq!(t.observe(true, false, 0, 1), None);
    }
}
