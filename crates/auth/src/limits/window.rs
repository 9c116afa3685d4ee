//! Token accounting over a rolling window, kept as a ring of fixed-width slots.
//!
//! A window of `W = n · g` milliseconds is stored as `n + 1` slots of `g` ms each. A charge
//! made at time `t` goes into slot `⌊t / g⌋`. At time `t` the usage is the sum of every slot
//! that overlaps `(t − W, t]`, that is slots `⌊t/g⌋ − n ..= ⌊t/g⌋`. Counting the partly
//! expired oldest slot in full makes the limit strict: whatever half-open interval of length
//! `W` one picks, the tokens admitted in it never exceed the quota. The price is that a
//! charge is forgotten between `W` and `W + g` after it was made, never earlier.
//!
//! Unlike GCRA this can charge any amount, report usage without consuming, and give tokens
//! back (a refund removes tokens from the newest slots first). The ring is allocated on the
//! first charge and freed whenever the window empties, so idle keys cost a few bytes.

use std::time::Duration;

#[derive(Debug, Clone)]
pub(crate) struct SlidingWindow {
    slot_ms: i64,
    /// Slots in the window, `n + 1`.
    len: i64,
    /// Ring of `len` slots (slot `i` at `i mod len`), or empty while nothing is counted.
    slots: Box<[u32]>,
    /// Index of the newest slot the ring has been advanced to.
    newest: i64,
    total: u64,
}

impl SlidingWindow {
    /// A window of `window_ms` split into slots of `slot_ms` (which must divide it).
    pub(crate) fn new(window_ms: i64, slot_ms: i64, now_ms: i64) -> Self {
        debug_assert!(slot_ms > 0 && window_ms % slot_ms == 0);
        let len = window_ms / slot_ms + 1;
        Self { slot_ms, len, slots: Box::default(), newest: now_ms.div_euclid(slot_ms), total: 0 }
    }

    fn len(&self) -> i64 {
        self.len
    }

    fn tokens_in(&self, slot: i64) -> u32 {
        self.slots.get(self.at(slot)).copied().unwrap_or(0)
    }

    fn allocate(&mut self) {
        if self.slots.is_empty() {
            self.slots = vec![0; self.len as usize].into_boxed_slice();
        }
    }

    fn at(&self, slot: i64) -> usize {
        slot.rem_euclid(self.len()) as usize
    }

    /// Moves the ring forward to `now_ms`, dropping slots that left the window. A clock that
    /// goes backwards leaves the ring where it is.
    pub(crate) fn advance(&mut self, now_ms: i64) {
        let current = now_ms.div_euclid(self.slot_ms);
        if current <= self.newest {
            return;
        }
        if self.total > 0 {
            let first_stale = self.newest + 1;
            let stale = (current - self.newest).min(self.len());
            for slot in first_stale..first_stale + stale {
                let i = self.at(slot);
                self.total -= u64::from(self.slots[i]);
                self.slots[i] = 0;
            }
        }
        if self.total == 0 {
            self.slots = Box::default();
        }
        self.newest = current;
    }

    /// Tokens counted in the window as of the last `advance`.
    pub(crate) fn used(&self) -> u64 {
        self.total
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// How long from `now_ms` until `tokens` more fit under `quota`; zero if they fit now.
    /// `None` when `tokens` alone exceeds `quota`, so no wait can help.
    pub(crate) fn wait_for(&self, tokens: u64, quota: u64, now_ms: i64) -> Option<Duration> {
        if tokens > quota {
            return None;
        }
        if self.total + tokens <= quota {
            return Some(Duration::ZERO);
        }
        let oldest = self.newest - (self.len() - 1);
        let mut freed = 0u64;
        for slot in oldest..=self.newest {
            freed += u64::from(self.tokens_in(slot));
            if self.total - freed + tokens <= quota {
                return Some(self.expiry_wait(slot, now_ms));
            }
        }
        Some(self.expiry_wait(self.newest, now_ms))
    }

    /// Time from `now_ms` until slot `slot` stops being counted.
    fn expiry_wait(&self, slot: i64, now_ms: i64) -> Duration {
        let expires_ms = (slot + self.len()) * self.slot_ms;
        Duration::from_millis((expires_ms - now_ms).max(0) as u64)
    }

    /// Time until every token now counted has left the window (the window "resets" to its
    /// initial, empty state).
    pub(crate) fn reset_after(&self, now_ms: i64) -> Duration {
        let oldest = self.newest - (self.len() - 1);
        (oldest..=self.newest)
            .rev()
            .find(|&slot| self.tokens_in(slot) != 0)
            .map_or(Duration::ZERO, |slot| self.expiry_wait(slot, now_ms))
    }

    /// Adds tokens to the newest slot. Callers check the quota first.
    pub(crate) fn charge(&mut self, tokens: u64) {
        if tokens == 0 {
            return;
        }
        self.allocate();
        let i = self.at(self.newest);
        let added = tokens.min(u64::from(u32::MAX - self.slots[i]));
        self.slots[i] += added as u32;
        self.total += added;
    }

    /// Gives tokens back, newest slots first; never below zero.
    pub(crate) fn refund(&mut self, mut tokens: u64) {
        if self.slots.is_empty() {
            return;
        }
        let oldest = self.newest - (self.len() - 1);
        for slot in (oldest..=self.newest).rev() {
            if tokens == 0 {
                break;
            }
            let i = self.at(slot);
            let taken = tokens.min(u64::from(self.slots[i]));
            self.slots[i] -= taken as u32;
            self.total -= taken;
            tokens -= taken;
        }
    }

    /// Non-empty slots as `(slot start in ms, tokens)`, for persistence.
    pub(crate) fn slots(&self) -> Vec<(i64, u32)> {
        let oldest = self.newest - (self.len() - 1);
        (oldest..=self.newest)
            .filter_map(|slot| {
                let tokens = self.tokens_in(slot);
                (tokens != 0).then_some((slot * self.slot_ms, tokens))
            })
            .collect()
    }

    /// Restores tokens recorded at `start_ms`, if that slot is still in the window. Tokens
    /// stamped in the future (a clock that moved back) land in the newest slot.
    pub(crate) fn restore(&mut self, start_ms: i64, tokens: u32) {
        let slot = start_ms.div_euclid(self.slot_ms).min(self.newest);
        if slot < self.newest - (self.len() - 1) {
            return;
        }
        self.allocate();
        let i = self.at(slot);
        let added = tokens.min(u32::MAX - self.slots[i]);
        self.slots[i] += added;
        self.total += u64::from(added);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_leave_after_the_window_plus_at_most_one_slot() {
        let mut w = SlidingWindow::new(60_000, 1_000, 0);
        w.charge(10);
        w.advance(60_999);
        assert_eq!(w.used(), 10, "still inside (t - W, t]");
        w.advance(61_000);
        assert_eq!(w.used(), 0);
    }

    #[test]
    fn wait_for_names_the_first_instant_that_fits() {
        let mut w = SlidingWindow::new(60_000, 1_000, 0);
        w.charge(60);
        w.advance(5_500);
        w.charge(40);
        assert_eq!(w.wait_for(1, 100, 5_500), Some(Duration::from_millis(61_000 - 5_500)));
        assert_eq!(w.wait_for(61, 100, 5_500), Some(Duration::from_millis(66_000 - 5_500)));
        assert_eq!(w.wait_for(101, 100, 5_500), None);
        assert_eq!(w.reset_after(5_500), Duration::from_millis(66_000 - 5_500));
    }

    #[test]
    fn refund_takes_newest_first_and_stops_at_zero() {
        let mut w = SlidingWindow::new(60_000, 1_000, 0);
        w.charge(5);
        w.advance(2_000);
        w.charge(3);
        w.refund(4);
        assert_eq!(w.used(), 4);
        assert_eq!(w.slots(), vec![(0, 4)]);
        w.refund(100);
        assert!(w.is_empty());
    }

    #[test]
    fn jumping_far_ahead_clears_every_slot() {
        let mut w = SlidingWindow::new(60_000, 1_000, 0);
        for t in 0..61 {
            w.advance(t * 1_000);
            w.charge(1);
        }
        w.advance(10_000_000);
        assert!(w.is_empty());
    }
}
