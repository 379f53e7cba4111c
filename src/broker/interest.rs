//! Node interest for brokers that route per channel: `node_subscribe`/`node_unsubscribe` pairs
//! counted per channel, the backend subscription started on 0 → 1 and stopped on 1 → 0, each
//! channel's changes serialized by its own lock (other channels never wait).
//!
//! A start that fails still counts (the contract pairs every call); the entry then holds no
//! handle, and [`Interests::restart`] starts it again once the backend is back.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use switchboard_protocol::ChannelName;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use super::BrokerError;

/// The channels this node receives, with a backend handle `H` per active subscription.
pub(crate) struct Interests<H> {
    map: Mutex<HashMap<ChannelName, Arc<AsyncMutex<Entry<H>>>>>,
}

struct Entry<H> {
    count: usize,
    handle: Option<H>,
    /// Taken out of the map: whoever holds a stale `Arc` looks the channel up again.
    removed: bool,
}

impl<H: Send + 'static> Interests<H> {
    pub(crate) fn new() -> Self {
        Self { map: Mutex::new(HashMap::new()) }
    }

    async fn lock(&self, channel: &ChannelName) -> OwnedMutexGuard<Entry<H>> {
        loop {
            let entry = self
                .map
                .lock()
                .entry(channel.clone())
                .or_insert_with(|| {
                    Arc::new(AsyncMutex::new(Entry { count: 0, handle: None, removed: false }))
                })
                .clone();
            let guard = entry.lock_owned().await;
            if !guard.removed {
                return guard;
            }
        }
    }

    /// Counts one more local subscription; starts the backend subscription with `start` when
    /// there is none (first subscriber, or an earlier start failed).
    pub(crate) async fn subscribe<F, Fut>(&self, channel: &ChannelName, start: F) -> Result<(), BrokerError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<H, BrokerError>>,
    {
        let mut entry = self.lock(channel).await;
        entry.count += 1;
        if entry.handle.is_none() {
            entry.handle = Some(start().await?);
        }
        Ok(())
    }

    /// Counts one local subscription less; on the last, stops the backend subscription with
    /// `stop` and forgets the channel.
    pub(crate) async fn unsubscribe<F, Fut>(&self, channel: &ChannelName, stop: F)
    where
        F: FnOnce(H) -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut entry = self.lock(channel).await;
        entry.count = entry.count.saturating_sub(1);
        if entry.count > 0 {
            return;
        }
        if let Some(handle) = entry.handle.take() {
            stop(handle).await;
        }
        entry.removed = true;
        self.map.lock().remove(channel);
    }

    /// Every counted channel whose handle is missing or `stale`, started again with `start`;
    /// the first error stops the pass (the caller retries later).
    pub(crate) async fn restart<S, F, Fut>(&self, stale: S, start: F) -> Result<(), BrokerError>
    where
        S: Fn(&H) -> bool,
        F: Fn(ChannelName) -> Fut,
        Fut: Future<Output = Result<H, BrokerError>>,
    {
        let channels: Vec<ChannelName> = self.map.lock().keys().cloned().collect();
        for channel in channels {
            let mut entry = self.lock(&channel).await;
            if entry.count == 0 {
                continue;
            }
            if entry.handle.as_ref().is_none_or(&stale) {
                entry.handle = None;
                entry.handle = Some(start(channel.clone()).await?);
            }
        }
        Ok(())
    }

    /// How many channels are counted.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn starts_on_first_and_stops_on_last() {
        let interests = Interests::<u32>::new();
        let (starts, stops) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let ch = ChannelName::new("a").unwrap();
        for _ in 0..3 {
            interests
                .subscribe(&ch, || async {
                    starts.fetch_add(1, Ordering::SeqCst);
                    Ok(1)
                })
                .await
                .unwrap();
        }
        for _ in 0..3 {
            interests
                .unsubscribe(&ch, |_| async {
                    stops.fetch_add(1, Ordering::SeqCst);
                })
                .await;
        }
        assert_eq!((starts.load(Ordering::SeqCst), stops.load(Ordering::SeqCst)), (1, 1));
        assert_eq!(interests.len(), 0);
    }

    #[tokio::test]
    async fn a_failed_start_still_counts_and_restarts_later() {
        let interests = Interests::<u32>::new();
        let ch = ChannelName::new("a").unwrap();
        let down = interests.subscribe(&ch, || async { Err(BrokerError::Unavailable("down".into())) }).await;
        assert!(down.is_err());
        assert_eq!(interests.len(), 1, "counted although it failed");
        interests.restart(|_| false, |_| async { Ok(7) }).await.unwrap();
        let started = AtomicUsize::new(0);
        interests
            .subscribe(&ch, || async {
                started.fetch_add(1, Ordering::SeqCst);
                Ok(8)
            })
            .await
            .unwrap();
        assert_eq!(started.load(Ordering::SeqCst), 0, "restart made it active");
        interests.restart(|h| *h == 7, |_| async { Ok(9) }).await.unwrap();
        let seen = Mutex::new(None);
        let seen_ref = &seen;
        interests.unsubscribe(&ch, |h| async move { *seen_ref.lock() = Some(h) }).await;
        assert_eq!(*seen.lock(), None, "two subscriptions counted: still active");
        interests.unsubscribe(&ch, |h| async move { *seen_ref.lock() = Some(h) }).await;
        assert_eq!(*seen.lock(), Some(9), "the stale handle was replaced");
    }
}
