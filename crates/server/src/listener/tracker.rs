//! Open connections by client address, with what each is doing, for the caps and timeouts.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

const NEVER: u64 = u64::MAX;

/// A connection that finished a response this recently is not displaced, since the response's
/// last bytes may still be on their way out.
const FLUSH_MILLIS: u64 = 1000;

pub(super) struct Tracker {
    max_total: usize,
    max_per_source: usize,
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    connections: HashMap<u64, Arc<Connection>>,
    per_source: HashMap<IpAddr, usize>,
}

/// One connection's state, shared by its task, its I/O and its requests. Times are
/// milliseconds since the tracker's epoch.
pub(super) struct Connection {
    id: u64,
    source: IpAddr,
    epoch: Instant,
    accepted: u64,
    in_flight: AtomicUsize,
    served: AtomicU64,
    idle_since: AtomicU64,
    head_started: AtomicU64,
    evicted: AtomicBool,
    wake: Notify,
}

/// Holds a connection's place under the caps until dropped.
pub(super) struct Registration {
    tracker: Arc<Tracker>,
    pub(super) connection: Arc<Connection>,
}

/// Marks a request in flight from its head until its response body is done or dropped.
pub(super) struct RequestGuard(Arc<Connection>);

/// Why a connection's watchdog closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expiry {
    /// The head did not arrive in time; `started` when some of it did (then we answer 408).
    Head { started: bool },
    /// A kept-alive connection waited too long for its next request.
    Idle,
}

/// The watchdog's timeouts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    pub header_read: Duration,
    pub keep_alive: Duration,
}

impl Tracker {
    pub(super) fn new(max_total: usize, max_per_source: usize) -> Self {
        Self {
            max_total: max_total.max(1),
            max_per_source: max_per_source.max(1),
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(Registry::default()),
        }
    }

    /// Registers a new connection from `ip`, first closing the longest-idle connection in the
    /// way when a cap is reached; `None` when every connection in the way is busy.
    pub(super) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Registration> {
        let source = source_of(ip);
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let from_source = open.per_source.get(&source).copied().unwrap_or(0);
        if from_source >= self.max_per_source {
            if !open.evict_idlest(|c| c.source == source) {
                return None;
            }
        } else if open.connections.len() >= self.max_total && !open.evict_idlest(|_| true) {
            return None;
        }
        let now = millis_since(self.epoch);
        let connection = Arc::new(Connection {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            source,
            epoch: self.epoch,
            accepted: now,
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            idle_since: AtomicU64::new(now),
            head_started: AtomicU64::new(NEVER),
            evicted: AtomicBool::new(false),
            wake: Notify::new(),
        });
        open.connections.insert(connection.id, connection.clone());
        *open.per_source.entry(source).or_default() += 1;
        Some(Registration { tracker: self.clone(), connection })
    }

    fn remove(&self, connection: &Connection) {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        open.connections.remove(&connection.id);
        if let Some(count) = open.per_source.get_mut(&connection.source) {
            *count -= 1;
            if *count == 0 {
                open.per_source.remove(&connection.source);
            }
        }
    }
}

impl Registry {
    /// Tells the idle connection matching `filter` that has waited longest to close; the
    /// connection leaves the registry when its task ends, moments later.
    fn evict_idlest(&self, filter: impl Fn(&Connection) -> bool) -> bool {
        let idlest = self
            .connections
            .values()
            .filter(|c| filter(c) && c.is_evictable())
            .min_by_key(|c| c.idle_since.load(Ordering::Relaxed));
        match idlest {
            Some(connection) => {
                connection.evicted.store(true, Ordering::Relaxed);
                connection.wake.notify_one();
                true
            }
            None => false,
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.tracker.remove(&self.connection);
    }
}

impl Connection {
    pub(super) fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.served.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(NEVER, Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    /// Called on every read that returned data: notes when the next request's head begins.
    pub(super) fn bytes_read(&self) {
        if self.is_idle() && self.head_started.load(Ordering::Relaxed) == NEVER {
            self.head_started.store(millis_since(self.epoch), Ordering::Relaxed);
            self.wake.notify_one();
        }
    }

    pub(super) fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0
    }

    /// Idle, and not just done with a response hyper may still be flushing.
    fn is_evictable(&self) -> bool {
        let idle_for = millis_since(self.epoch).saturating_sub(self.idle_since.load(Ordering::Relaxed));
        let flushed = !self.has_served() || idle_for >= FLUSH_MILLIS;
        self.is_idle() && flushed && !self.is_evicted()
    }

    pub(super) fn has_served(&self) -> bool {
        self.served.load(Ordering::Relaxed) > 0
    }

    pub(super) fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Completes when the connection's state changed in a way its watchdog must look at.
    pub(super) async fn changed(&self) {
        self.wake.notified().await;
    }

    /// When the watchdog must act, and why; `None` while a request is in flight.
    pub(super) fn deadline(&self, timeouts: Timeouts) -> Option<(Instant, Expiry)> {
        if !self.is_idle() {
            return None;
        }
        let head_started = self.head_started.load(Ordering::Relaxed);
        let (from, after, expiry) = if self.served.load(Ordering::Relaxed) == 0 {
            (self.accepted, timeouts.header_read, Expiry::Head { started: head_started != NEVER })
        } else if head_started != NEVER {
            (head_started, timeouts.header_read, Expiry::Head { started: true })
        } else {
            (self.idle_since.load(Ordering::Relaxed), timeouts.keep_alive, Expiry::Idle)
        };
        Some((self.epoch + Duration::from_millis(from) + after, expiry))
    }

    /// The expiry that is due now, if any.
    pub(super) fn expired(&self, timeouts: Timeouts) -> Option<Expiry> {
        self.deadline(timeouts).filter(|(at, _)| *at <= Instant::now()).map(|(_, expiry)| expiry)
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.idle_since.store(millis_since(self.0.epoch), Ordering::Relaxed);
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.wake.notify_one();
        }
    }
}

/// The address a cap counts against: IPv4 as is, IPv6 by /64 (what one host usually owns).
fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

fn millis_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[tokio::test]
    async fn a_full_source_displaces_its_own_idlest_connection() {
        let tracker = Arc::new(Tracker::new(10, 2));
        let first = tracker.admit(ip("10.0.0.1")).unwrap();
        let busy = tracker.admit(ip("10.0.0.1")).unwrap();
        let _request = busy.connection.begin_request();
        let third = tracker.admit(ip("10.0.0.1")).expect("the idle one makes room");
        assert!(first.connection.is_evicted() && !busy.connection.is_evicted());
        // All that is left of that source is busy or already leaving: refused.
        let _in_flight = third.connection.begin_request();
        assert!(tracker.admit(ip("10.0.0.1")).is_none());
        assert!(tracker.admit(ip("10.0.0.2")).is_some(), "other sources are not affected");
    }

    #[tokio::test]
    async fn the_global_cap_displaces_the_idlest_and_refuses_when_all_are_busy() {
        let tracker = Arc::new(Tracker::new(2, 10));
        let a = tracker.admit(ip("10.0.0.1")).unwrap();
        let b = tracker.admit(ip("10.0.0.2")).unwrap();
        let _busy = b.connection.begin_request();
        let c = tracker.admit(ip("10.0.0.3")).expect("displaces the idle one");
        assert!(a.connection.is_evicted());
        drop(a);
        let _busy_too = c.connection.begin_request();
        assert!(tracker.admit(ip("10.0.0.4")).is_none());
    }

    #[test]
    fn ipv6_counts_by_prefix_and_mapped_ipv4_as_ipv4() {
        assert_eq!(source_of(ip("2001:db8::1")), source_of(ip("2001:db8::ffff:1")));
        assert_ne!(source_of(ip("2001:db8::1")), source_of(ip("2001:db8:0:1::1")));
        assert_eq!(source_of(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }

    #[tokio::test]
    async fn deadlines_follow_what_the_connection_is_doing() {
        let timeouts = Timeouts { header_read: Duration::from_millis(100), keep_alive: Duration::from_secs(30) };
        let tracker = Arc::new(Tracker::new(10, 10));
        let registration = tracker.admit(ip("10.0.0.1")).unwrap();
        let connection = &registration.connection;
        assert_eq!(connection.deadline(timeouts).unwrap().1, Expiry::Head { started: false });
        let request = connection.begin_request();
        assert_eq!(connection.deadline(timeouts), None);
        drop(request);
        let (at, expiry) = connection.deadline(timeouts).unwrap();
        assert!(expiry == Expiry::Idle && at > Instant::now() + Duration::from_secs(29));
        connection.bytes_read();
        let (at, expiry) = connection.deadline(timeouts).unwrap();
        assert!(expiry == Expiry::Head { started: true } && at <= Instant::now() + timeouts.header_read);
        assert_eq!(connection.expired(timeouts), None);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(connection.expired(timeouts), Some(Expiry::Head { started: true }));
    }
}
