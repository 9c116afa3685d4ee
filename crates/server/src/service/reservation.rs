//! Tokens admitted ahead of a streamed answer. A stream is admitted for its whole cost (so a
//! key that cannot pay for it is refused before any work), then marks what it delivers; what
//! is still reserved when the call ends was never delivered and is refunded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct Reservation(Arc<AtomicU64>);

impl Reservation {
    pub(crate) fn new(tokens: u64) -> Self {
        Self(Arc::new(AtomicU64::new(tokens)))
    }

    /// Marks up to `tokens` more as delivered.
    pub fn deliver(&self, tokens: u64) {
        let _ = self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| Some(left.saturating_sub(tokens)));
    }

    /// The stream ended as it should: everything reserved was delivered.
    pub fn deliver_all(&self) {
        self.0.store(0, Ordering::Release);
    }

    /// Tokens reserved and not delivered.
    pub fn undelivered(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_counts_down_to_zero_and_never_below() {
        let reservation = Reservation::new(10);
        let seen_by_stream = reservation.clone();
        seen_by_stream.deliver(4);
        assert_eq!(reservation.undelivered(), 6);
        seen_by_stream.deliver(100);
        assert_eq!(reservation.undelivered(), 0);
        let whole = Reservation::new(7);
        whole.deliver_all();
        assert_eq!(whole.undelivered(), 0);
    }
}
