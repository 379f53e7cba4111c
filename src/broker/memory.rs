//! The in-memory broker: one node, no setup. History and presence live in this process and are
//! lost with it; a restart gives every stream a new epoch, so clients learn it (`recovered: false`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use switchboard_protocol::ChannelName;
use switchboard_protocol::frame::ClientInfo;
use tokio::time::Instant;

use super::{
    Broker, BrokerError, DeliverySink, Health, HistoryQuery, HistoryResult, IDEMPOTENCY_WINDOW,
    NewPublication, PublishResult, StreamTop, new_epoch,
};
use crate::model::{Delivery, Epoch, PresenceEvent, PresenceKind, Publication};

/// Most idempotency keys remembered per channel; the oldest go first.
const MAX_IDEMPOTENCY_KEYS: usize = 10_000;

/// See the module docs.
pub struct MemoryBroker {
    streams: RwLock<HashMap<ChannelName, Arc<Mutex<Stream>>>>,
    /// `max_channels` and the metrics counting channels, once the node sets them.
    limits: std::sync::OnceLock<(usize, Arc<crate::metrics::Metrics>)>,
    presence: Mutex<HashMap<ChannelName, HashMap<String, Arc<ClientInfo>>>>,
    /// Room → the node serving its media, and until when.
    rooms: Mutex<HashMap<ChannelName, (String, Instant)>>,
    sink: Arc<dyn DeliverySink>,
}

struct Stream {
    /// The channel's name, shared by its publications (so that names compare by pointer).
    name: ChannelName,
    epoch: Epoch,
    top: u64,
    /// Publications with the instant they leave the history.
    history: VecDeque<(Arc<Publication>, Instant)>,
    idempotency: HashMap<String, (u64, Instant)>,
    idempotency_order: VecDeque<String>,
    /// Local subscriptions (`node_subscribe` minus `node_unsubscribe`): never swept while > 0.
    subscribers: usize,
    /// The stream's creation, last publication or last subscriber leaving.
    last_active: Instant,
}

impl Stream {
    fn new(name: ChannelName) -> Self {
        Self {
            name,
            epoch: new_epoch(),
            top: 0,
            history: VecDeque::new(),
            idempotency: HashMap::new(),
            idempotency_order: VecDeque::new(),
            subscribers: 0,
            last_active: Instant::now(),
        }
    }

    /// Whether nothing needs the stream any more: no subscriber, no history, no remembered
    /// idempotency key, and nothing happened for `idle`.
    fn idle(&mut self, now: Instant, idle: Duration) -> bool {
        self.trim(now);
        let key_alive = self
            .idempotency_order
            .back()
            .and_then(|k| self.idempotency.get(k))
            .is_some_and(|(_, at)| *at + IDEMPOTENCY_WINDOW > now);
        self.subscribers == 0 && self.history.is_empty() && !key_alive && self.last_active + idle <= now
    }

    fn trim(&mut self, now: Instant) {
        while self.history.front().is_some_and(|(_, expires)| *expires <= now) {
            self.history.pop_front();
        }
    }

    fn remembered(&mut self, key: &str, now: Instant) -> Option<u64> {
        while let Some(oldest) = self.idempotency_order.front() {
            let expired = self.idempotency.get(oldest).is_none_or(|(_, at)| *at + IDEMPOTENCY_WINDOW <= now);
            if !expired && self.idempotency_order.len() <= MAX_IDEMPOTENCY_KEYS {
                break;
            }
            if let Some(k) = self.idempotency_order.pop_front() {
                self.idempotency.remove(&k);
            }
        }
        self.idempotency.get(key).map(|(offset, _)| *offset)
    }
}

impl MemoryBroker {
    /// A broker delivering into `sink`.
    pub fn new(sink: Arc<dyn DeliverySink>) -> Self {
        Self {
            streams: RwLock::new(HashMap::new()),
            presence: Mutex::new(HashMap::new()),
            rooms: Mutex::new(HashMap::new()),
            limits: std::sync::OnceLock::new(),
            sink,
        }
    }

    /// The channel's stream, created if new (within `max_channels`).
    fn stream(&self, channel: &ChannelName) -> Result<Arc<Mutex<Stream>>, BrokerError> {
        if let Some(s) = self.streams.read().get(channel) {
            return Ok(s.clone());
        }
        let mut streams = self.streams.write();
        if let Some(s) = streams.get(channel) {
            return Ok(s.clone());
        }
        if let Some((max, metrics)) = self.limits.get() {
            if *max > 0 && streams.len() >= *max {
                metrics.channel_limit_refused.add(1);
                return Err(BrokerError::ChannelLimit(*max));
            }
            metrics.channels.add(1);
        }
        let stream = Arc::new(Mutex::new(Stream::new(channel.clone())));
        streams.insert(channel.clone(), stream.clone());
        Ok(stream)
    }

    /// Channels whose state this broker holds.
    pub fn channel_count(&self) -> usize {
        self.streams.read().len()
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(&self, request: NewPublication) -> Result<PublishResult, BrokerError> {
        let stream = self.stream(&request.channel)?;
        let mut s = stream.lock();
        let now = Instant::now();
        s.last_active = now;
        if let Some(key) = &request.idempotency_key
            && let Some(offset) = s.remembered(key, now)
        {
            return Ok(PublishResult { epoch: s.epoch.clone(), offset, duplicate: true });
        }
        s.top += 1;
        let publication =
            Arc::new(Publication::new(s.name.clone(), s.top, s.epoch.clone(), request.payload, request.info));
        let size = request.options.history_size;
        if size > 0 {
            let ttl = std::time::Duration::from_secs(request.options.history_ttl);
            s.history.push_back((publication.clone(), now + ttl));
            while s.history.len() > size {
                s.history.pop_front();
            }
        }
        s.trim(now);
        if let Some(key) = request.idempotency_key {
            let top = s.top;
            s.idempotency.insert(key.clone(), (top, now));
            s.idempotency_order.push_back(key);
        }
        // Delivered inside the stream's lock: every subscriber sees offsets in order.
        let result = PublishResult { epoch: s.epoch.clone(), offset: s.top, duplicate: false };
        self.sink.deliver(Delivery::Publication(publication));
        Ok(result)
    }

    async fn history(
        &self,
        channel: &ChannelName,
        query: HistoryQuery,
    ) -> Result<HistoryResult, BrokerError> {
        let stream = self.stream(channel)?;
        let mut s = stream.lock();
        s.trim(Instant::now());
        let top = StreamTop { epoch: s.epoch.clone(), offset: s.top };
        let after = match &query.since {
            Some(p) if *p.epoch == *s.epoch => p.offset,
            _ => 0,
        };
        let matching = s.history.iter().filter(|(p, _)| p.offset > after).map(|(p, _)| p.clone());
        let publications = if query.reverse {
            matching.rev().take(query.limit).collect()
        } else {
            matching.take(query.limit).collect()
        };
        Ok(HistoryResult { top, publications })
    }

    async fn presence_add(
        &self,
        channel: &ChannelName,
        info: Arc<ClientInfo>,
        announce: bool,
    ) -> Result<(), BrokerError> {
        let added = self
            .presence
            .lock()
            .entry(channel.clone())
            .or_default()
            .insert(info.client.clone(), info.clone())
            .is_none();
        if added && announce {
            let event = PresenceEvent::new(channel.clone(), PresenceKind::Join, info);
            self.sink.deliver(Delivery::Presence(Arc::new(event)));
        }
        Ok(())
    }

    async fn presence_remove(
        &self,
        channel: &ChannelName,
        info: Arc<ClientInfo>,
        announce: bool,
    ) -> Result<(), BrokerError> {
        let removed = {
            let mut all = self.presence.lock();
            let removed = all.get_mut(channel).and_then(|m| m.remove(&info.client)).is_some();
            if all.get(channel).is_some_and(|m| m.is_empty()) {
                all.remove(channel);
            }
            removed
        };
        if removed && announce {
            let event = PresenceEvent::new(channel.clone(), PresenceKind::Leave, info);
            self.sink.deliver(Delivery::Presence(Arc::new(event)));
        }
        Ok(())
    }

    async fn presence(&self, channel: &ChannelName) -> Result<Vec<Arc<ClientInfo>>, BrokerError> {
        Ok(self.presence.lock().get(channel).map(|m| m.values().cloned().collect()).unwrap_or_default())
    }

    async fn claim_room(&self, room: &ChannelName, node: &str, ttl: Duration) -> Result<String, BrokerError> {
        let now = Instant::now();
        let mut rooms = self.rooms.lock();
        let holder = rooms.entry(room.clone()).or_insert_with(|| (node.to_owned(), now));
        if holder.0 == node || holder.1 <= now {
            *holder = (node.to_owned(), now + ttl);
        }
        Ok(holder.0.clone())
    }

    /// Counts the subscriber, so the stream is not swept under it (and creates the stream
    /// within `max_channels`: a subscription holds a channel as a publication does).
    async fn node_subscribe(&self, channel: &ChannelName) -> Result<(), BrokerError> {
        self.stream(channel)?.lock().subscribers += 1;
        Ok(())
    }

    async fn node_unsubscribe(&self, channel: &ChannelName) -> Result<(), BrokerError> {
        let stream = self.streams.read().get(channel).cloned();
        if let Some(stream) = stream {
            let mut s = stream.lock();
            s.subscribers = s.subscribers.saturating_sub(1);
            s.last_active = Instant::now();
        }
        Ok(())
    }

    fn health(&self) -> Health {
        Health::Ok
    }

    fn limit_channels(&self, max: usize, metrics: Arc<crate::metrics::Metrics>) {
        metrics.channels.add(self.channel_count() as i64);
        let _ = self.limits.set((max, metrics));
    }

    fn sweep(&self, idle: Duration) -> usize {
        let now = Instant::now();
        let mut swept = 0;
        // A stream someone holds right now (a publish between lookup and lock) stays.
        self.streams.write().retain(|_, stream| {
            let keep = Arc::strong_count(stream) > 1 || !stream.lock().idle(now, idle);
            swept += usize::from(!keep);
            keep
        });
        self.rooms.lock().retain(|_, (_, until)| *until > now);
        if let Some((_, metrics)) = self.limits.get() {
            metrics.channels.add(-(swept as i64));
        }
        swept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn room_claims_lapse() {
        super::super::conformance::room_claims_lapse(
            |sink| async move { Arc::new(MemoryBroker::new(sink)) as Arc<dyn Broker> },
            super::super::conformance::TimeControl::Paused,
            Duration::from_secs(3),
        )
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn passes_the_broker_conformance_suite() {
        super::super::conformance::run_all(
            |sink| async move { Arc::new(MemoryBroker::new(sink)) as Arc<dyn Broker> },
            super::super::conformance::TimeControl::Paused,
        )
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn idle_streams_are_swept_but_not_those_with_subscribers_history_or_keys() {
        use super::super::conformance::{CollectingSink, channel, request};
        use crate::config::ChannelOptions;
        let broker = MemoryBroker::new(Arc::new(CollectingSink::default()));
        let idle = Duration::from_secs(10);
        let none = ChannelOptions { history_size: 0, ..ChannelOptions::default() };
        let short = ChannelOptions { history_ttl: 30, ..ChannelOptions::default() };
        let (gone, subscribed, with_history, keyed) =
            (channel("a"), channel("b"), channel("c"), channel("d"));
        let first = broker.publish(request(&gone, 1, &none)).await.unwrap();
        broker.node_subscribe(&subscribed).await.unwrap();
        broker.publish(request(&with_history, 1, &short)).await.unwrap();
        let mut with_key = request(&keyed, 1, &none);
        with_key.idempotency_key = Some("k".into());
        broker.publish(with_key).await.unwrap();
        assert_eq!(broker.sweep(idle), 0, "nothing is idle yet");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(broker.sweep(idle), 1, "only the channel nothing holds goes");
        assert_eq!(broker.channel_count(), 3);
        let again = broker.publish(request(&gone, 2, &none)).await.unwrap();
        assert_ne!(again.epoch, first.epoch, "a swept channel starts a new epoch");
        assert_eq!(again.offset, 1);
        // History expired (30 s) and the idempotency window (5 min) passed: those go too; the
        // subscribed one stays until its subscriber leaves, then idles out.
        tokio::time::advance(IDEMPOTENCY_WINDOW).await;
        assert_eq!(broker.sweep(idle), 3);
        assert_eq!(broker.channel_count(), 1);
        broker.node_unsubscribe(&subscribed).await.unwrap();
        assert_eq!(broker.sweep(idle), 0, "idle only from the last subscriber's leaving");
        tokio::time::advance(idle).await;
        assert_eq!(broker.sweep(idle), 1);
        assert_eq!(broker.channel_count(), 0);
    }
}
