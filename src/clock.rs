//! Time, as a dependency: everything that decides by time (timeouts,
//! locks, activity) asks a [`Clock`] it was given, so that tests move time
//! forward instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// The current time in [`Millis`], from the system clock.
#[must_use]
pub fn now_millis() -> Millis {
    millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

/// A duration in [`Millis`] (a longer one than fits is the longest that does).
#[must_use]
pub fn millis(d: Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// RFC 3339 text of a time in milliseconds, to the second.
#[must_use]
pub fn rfc3339(ms: Millis) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now(&self) -> Millis;
}

/// The system clock: what every deployment uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Millis {
        now_millis()
    }
}

/// The system clock moved forward by however much [`AdjustableClock::advance`]
/// added: time passes as usual, and a test can jump over a timeout.
///
/// ```
/// use latchkey::clock::{AdjustableClock, Clock};
/// use std::time::Duration;
///
/// let clock = AdjustableClock::default();
/// let before = clock.now();
/// clock.advance(Duration::from_secs(60));
/// assert!(clock.now() >= before + 60_000);
/// ```
#[derive(Debug, Default)]
pub struct AdjustableClock {
    offset: AtomicI64,
}

impl AdjustableClock {
    /// Moves this clock forward.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for AdjustableClock {
    fn now(&self) -> Millis {
        now_millis().saturating_add(self.offset.load(Ordering::SeqCst))
    }
}
