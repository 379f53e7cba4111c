//! Per-channel publication rates, for the dashboard's busiest-first channel list
//! (`GET /api/channels`). Counted where the node accepts a publication ([`crate::broker::publish`]),
//! once per publication and never per delivery: a shard's read lock and two atomic additions.
//! Each channel's rate is an exponentially decayed average over one-second windows (time constant
//! [`TAU_SECONDS`]); at most `admin_rate_channels` channels are tracked, channels silent for
//! [`IDLE_SECONDS`] are forgotten.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::RwLock;
use switchboard_protocol::ChannelName;

use crate::metrics::{Counter, Gauge};

/// The decayed average forgets with this time constant, in seconds.
pub const TAU_SECONDS: f64 = 5.0;
/// A channel without publications this long is forgotten (its rate is ~0 by then).
pub const IDLE_SECONDS: u64 = 60;

const SHARDS: usize = 16;

/// See the module docs.
pub struct ChannelRates {
    shards: [RwLock<HashMap<ChannelName, Rate>>; SHARDS],
    max: AtomicUsize,
    /// Channels tracked now.
    pub tracked: Gauge,
    /// Publications to channels left untracked because `admin_rate_channels` were.
    pub untracked: Counter,
}

impl Default for ChannelRates {
    fn default() -> Self {
        Self {
            shards: Default::default(),
            max: AtomicUsize::new(10_000),
            tracked: Gauge::default(),
            untracked: Counter::default(),
        }
    }
}

impl std::fmt::Debug for ChannelRates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelRates").field("tracked", &self.tracked.get()).finish()
    }
}

/// Seconds since the first call: the windows' clock.
pub fn now_seconds() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs()
}

impl ChannelRates {
    /// Tracks at most `max` channels.
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    fn shard(&self, channel: &ChannelName) -> &RwLock<HashMap<ChannelName, Rate>> {
        let h = channel.as_str().bytes().fold(0x811c9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x01000193));
        &self.shards[h as usize % SHARDS]
    }

    /// Counts a publication to `channel` at second `now` ([`now_seconds`]).
    pub fn count(&self, channel: &ChannelName, now: u64) {
        if let Some(rate) = self.shard(channel).read().get(channel) {
            rate.hit(now);
            return;
        }
        let mut shard = self.shard(channel).write();
        if !shard.contains_key(channel) {
            if self.tracked.get() as usize >= self.max.load(Ordering::Relaxed) {
                let before = shard.len();
                shard.retain(|_, r| !r.idle(now));
                self.tracked.add(shard.len() as i64 - before as i64);
            }
            if self.tracked.get() as usize >= self.max.load(Ordering::Relaxed) {
                self.untracked.add(1);
                return;
            }
            self.tracked.add(1);
        }
        shard.entry(channel.clone()).or_insert_with(|| Rate::new(now)).hit(now);
    }

    /// Publications per second on `channel` (0 when untracked).
    pub fn per_second(&self, channel: &ChannelName, now: u64) -> f64 {
        self.shard(channel).read().get(channel).map_or(0.0, |r| r.per_second(now))
    }

    /// Every tracked channel and its rate.
    pub fn all(&self, now: u64) -> Vec<(ChannelName, f64)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            out.extend(shard.read().iter().map(|(c, r)| (c.clone(), r.per_second(now))));
        }
        out
    }

    /// The `n` busiest channels (at least 0.05 per second), busiest first.
    pub fn busiest(&self, now: u64, n: usize) -> Vec<(ChannelName, f64)> {
        let mut all: Vec<_> = self.all(now).into_iter().filter(|(_, r)| *r >= 0.05).collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }

    /// Forgets the channels silent for [`IDLE_SECONDS`].
    pub fn prune(&self, now: u64) {
        for shard in &self.shards {
            let mut shard = shard.write();
            let before = shard.len();
            shard.retain(|_, r| !r.idle(now));
            self.tracked.add(shard.len() as i64 - before as i64);
        }
    }
}

/// One channel's decayed rate. The first publication of a new second folds the previous one
/// into the average (whoever wins the swap does it; a race costs at most a count).
struct Rate {
    second: AtomicU64,
    count: AtomicU64,
    /// The average up to the end of `second - 1`, as `f64` bits.
    average: AtomicU64,
}

/// How much of the average one second keeps.
fn keep() -> f64 {
    (-1.0 / TAU_SECONDS).exp()
}

/// The average after a window of `n` publications, then `empty` silent seconds.
fn fold(average: f64, n: u64, empty: u64) -> f64 {
    let k = keep();
    (average * k + n as f64 * (1.0 - k)) * k.powi(empty.min(1000) as i32)
}

impl Rate {
    fn new(now: u64) -> Self {
        Self { second: AtomicU64::new(now), count: AtomicU64::new(0), average: AtomicU64::new(0) }
    }

    fn hit(&self, now: u64) {
        let second = self.second.load(Ordering::Acquire);
        if now > second
            && self.second.compare_exchange(second, now, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            let n = self.count.swap(0, Ordering::AcqRel);
            let average = f64::from_bits(self.average.load(Ordering::Acquire));
            self.average.store(fold(average, n, now - second - 1).to_bits(), Ordering::Release);
        }
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    /// The average with the window in progress counted as if it were complete, so a burst shows
    /// at once; decayed over the silent seconds since.
    fn per_second(&self, now: u64) -> f64 {
        let second = self.second.load(Ordering::Acquire);
        let n = self.count.load(Ordering::Acquire);
        let average = f64::from_bits(self.average.load(Ordering::Acquire));
        fold(average, n, now.saturating_sub(second + 1))
    }

    fn idle(&self, now: u64) -> bool {
        now.saturating_sub(self.second.load(Ordering::Relaxed)) >= IDLE_SECONDS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(name: &str) -> ChannelName {
        ChannelName::new(name).unwrap()
    }

    #[test]
    fn a_steady_rate_converges_and_silence_decays_it() {
        let rates = ChannelRates::default();
        let a = ch("a");
        for s in 0..60 {
            for _ in 0..10 {
                rates.count(&a, s);
            }
        }
        let r = rates.per_second(&a, 60);
        assert!((9.5..=10.0).contains(&r), "{r}");
        let later = rates.per_second(&a, 75);
        assert!(later < 1.0, "{later}");
        assert_eq!(rates.per_second(&ch("never"), 60), 0.0);
    }

    #[test]
    fn a_burst_shows_at_once_and_ranks_above_a_trickle() {
        let rates = ChannelRates::default();
        for _ in 0..50 {
            rates.count(&ch("busy"), 7);
        }
        rates.count(&ch("quiet"), 7);
        let top = rates.busiest(7, 10);
        assert_eq!(top.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(), ["busy", "quiet"]);
        assert!(top[1].1 > 0.0);
        assert_eq!(rates.busiest(7, 1).len(), 1);
        assert!(rates.busiest(40, 10).is_empty(), "long quiet: below 0.05 per second");
    }

    #[test]
    fn tracks_at_most_max_channels_and_forgets_idle_ones() {
        let rates = ChannelRates::default();
        rates.set_max(2);
        rates.count(&ch("a"), 0);
        rates.count(&ch("b"), 0);
        rates.count(&ch("c"), 0);
        assert_eq!((rates.tracked.get(), rates.untracked.get()), (2, 1));
        rates.count(&ch("b"), 30);
        rates.prune(IDLE_SECONDS);
        assert_eq!(rates.tracked.get(), 1, "a went idle");
        rates.count(&ch("c"), IDLE_SECONDS);
        assert_eq!(rates.tracked.get(), 2);
    }
}
