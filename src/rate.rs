//! A cheap per-address request limit for sign-in and setup, kept in memory
//! by each instance: a flood from one address is answered 429 before it
//! costs a store access or a password hash.

use dashmap::DashMap;

use crate::clock::Millis;

/// Requests per address in fixed one-minute windows.
#[derive(Debug)]
pub(crate) struct RateLimit {
    per_minute: u32,
    windows: DashMap<String, (Millis, u32)>,
}

/// How many addresses are tracked at most: past this, addresses not yet
/// seen are let through (to the store's own failure counting) rather than
/// growing the map without bound.
const MAX_ADDRESSES: usize = 100_000;

const MINUTE: Millis = 60_000;

impl RateLimit {
    pub(crate) fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            windows: DashMap::new(),
        }
    }

    /// Counts a request from `address` at `now`; `Err(until)` when the
    /// address has used up its minute.
    pub(crate) fn admit(&self, address: String, now: Millis) -> Result<(), Millis> {
        if self.windows.len() >= MAX_ADDRESSES && !self.windows.contains_key(&address) {
            self.prune(now);
            if self.windows.len() >= MAX_ADDRESSES {
                return Ok(());
            }
        }
        let mut entry = self.windows.entry(address).or_insert((now, 0));
        let (start, count) = &mut *entry;
        if now - *start >= MINUTE {
            (*start, *count) = (now, 0);
        }
        if *count >= self.per_minute {
            return Err(*start + MINUTE);
        }
        *count += 1;
        Ok(())
    }

    /// Forgets addresses whose window has passed.
    pub(crate) fn prune(&self, now: Millis) {
        self.windows.retain(|_, (start, _)| now - *start < MINUTE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_share_per_minute_and_no_more() {
        let limit = RateLimit::new(3);
        for _ in 0..3 {
            assert_eq!(limit.admit("a".into(), 1_000), Ok(()));
        }
        assert_eq!(limit.admit("a".into(), 1_500), Err(61_000));
        assert_eq!(
            limit.admit("b".into(), 1_500),
            Ok(()),
            "addresses are separate"
        );
        assert_eq!(limit.admit("a".into(), 61_000), Ok(()), "a new minute");
        limit.prune(200_000);
        assert!(limit.windows.is_empty());
    }
}
