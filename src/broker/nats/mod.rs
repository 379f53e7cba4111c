//! The NATS broker (NATS 2.9 or later with JetStream): nodes share channels, history and
//! presence through NATS.
//!
//! - **Streams**: one JetStream stream, `SWITCHBOARD`, subject `sb.p.HEX` per channel (the
//!   channel name hex-encoded: names hold `.`). Each message carries its offset and the channel's
//!   epoch in headers (`Sb-Offset`, `Sb-Epoch`), with its history expiry and the history size in
//!   force when it was published (`Sb-Expires`, `Sb-Keep`); the body is [`envelope`]'s.
//! - **Publish**: offset = the subject's last offset + 1, published with
//!   `Nats-Expected-Last-Subject-Sequence`, so concurrent publishers on any node serialize: the
//!   loser re-reads and retries. The subject's last message gives the epoch; a subject without
//!   one gets a new epoch. Idempotency keys go in `Nats-Msg-Id` (the stream's duplicate window is
//!   [`IDEMPOTENCY_WINDOW`]); a duplicate's ack names the first message, whose offset is read back.
//! - **Retention**: `max_messages_per_subject` is the largest `history_size` of the configuration
//!   (at least 1, so the last message keeps the epoch and top), `max_age` the largest
//!   `history_ttl` plus [`META_TTL_EXTRA`]; reads drop what the channel's own size and TTL
//!   exclude. Reading a channel with no message stores an offset-0 marker carrying a new epoch, so
//!   the epoch a subscriber sees on an empty channel is the one its first publication carries.
//! - **Fan-out** (a deliberate change from core NATS subscriptions on the stream's subjects: core
//!   subscribers also receive publishes that JetStream rejects, such as a lost
//!   expected-sequence race or a duplicate, and in no guaranteed order relative to the stream):
//!   one ordered push consumer per node over `sb.p.>` delivers exactly the stored messages, in
//!   stream order, to the hub, which drops channels without local subscribers. Join and leave
//!   events go over core NATS (`sb.e.HEX`), which needs no order against publications.
//! - **Presence**: the key-value bucket `sb-presence` with `max_age` = `presence_ttl`; keys
//!   `HEXCHANNEL.HEXCLIENT`; the session's refreshes re-put the key.
//! - **Losing NATS**: on the client's disconnect event the broker reports
//!   [`Health::Unavailable`] and tells the hub deliveries were lost ([`DeliverySink::lost`]);
//!   publishes fail with [`BrokerError::Unavailable`]. On reconnect it creates a fresh fan-out
//!   consumer and only then reports healthy. A NATS restart with file storage keeps the streams.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};
use switchboard_protocol::ChannelName;
use switchboard_protocol::frame::ClientInfo;
use tokio::sync::mpsc;

mod supervisor;
mod wire;

use self::wire::{Stored, channel_of, event_subject, hex, now_ms, subject, unavailable};
use super::{
    Broker, BrokerError, DeliverySink, Health, HistoryQuery, HistoryResult, IDEMPOTENCY_WINDOW,
    NewPublication, PublishResult, StreamTop, envelope, new_epoch,
};
use crate::config::Config;
use crate::model::{Delivery, Epoch, PresenceKind};

/// The stream's name.
const STREAM: &str = "SWITCHBOARD";
/// The presence bucket's name.
const BUCKET: &str = "sb-presence";
/// Seconds a channel's last message outlives its history, keeping the epoch and top.
const META_TTL_EXTRA: u64 = 7 * 24 * 3600;
/// How long a request to NATS may take.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Most tries of a publish that keeps losing the expected-sequence race.
const PUBLISH_TRIES: usize = 200;

const H_OFFSET: &str = "Sb-Offset";
const H_EPOCH: &str = "Sb-Epoch";
const H_EXPIRES: &str = "Sb-Expires";
const H_KEEP: &str = "Sb-Keep";

/// See the module docs.
pub struct NatsBroker {
    shared: Arc<Shared>,
    supervisor: tokio::task::JoinHandle<()>,
}

struct Shared {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: stream::Stream,
    presence: kv::Store,
    health: RwLock<Health>,
    sink: Arc<dyn DeliverySink>,
    /// Per channel: the last message this node published or read (stream sequence, offset,
    /// epoch), so an uncontended publish needs one round trip; publishes of one channel from this
    /// node take turns on its lock.
    last: Mutex<HashMap<ChannelName, Arc<tokio::sync::Mutex<Option<Last>>>>>,
}

#[derive(Debug, Clone)]
struct Last {
    /// The subject sequence a next publish expects (the stream sequence of the subject's last
    /// message; 0 for none).
    sequence: u64,
    offset: u64,
    epoch: Epoch,
}

impl NatsBroker {
    /// Connects to `url` (`nats://HOST:PORT`), creating or updating the stream and the presence
    /// bucket from `config`. Fails when the first connection cannot be made; after that,
    /// reconnects by itself.
    pub async fn connect(
        url: &str,
        config: &Config,
        sink: Arc<dyn DeliverySink>,
    ) -> Result<Arc<dyn Broker>, BrokerError> {
        let (events, events_rx) = mpsc::unbounded_channel();
        let options = async_nats::ConnectOptions::new()
            .connection_timeout(TIMEOUT)
            .request_timeout(Some(TIMEOUT))
            .max_reconnects(None)
            .reconnect_delay_callback(|attempt| {
                Duration::from_millis(100)
                    .saturating_mul(1 << attempt.min(6) as u32)
                    .min(Duration::from_secs(5))
            })
            .event_callback(move |event| {
                let events = events.clone();
                async move {
                    let _ = events.send(event);
                }
            });
        let client = async_nats::connect_with_options(url, options)
            .await
            .map_err(|e| BrokerError::Unavailable(format!("cannot reach nats at {url}: {e}")))?;
        let js = jetstream::new(client.clone());
        let all = std::iter::once(&config.defaults).chain(config.namespaces.values());
        let (mut keep, mut ttl) = (1usize, 0u64);
        for o in all {
            keep = keep.max(o.history_size);
            ttl = ttl.max(o.history_ttl);
        }
        let stream_config = stream::Config {
            name: STREAM.into(),
            subjects: vec!["sb.p.>".into()],
            max_messages_per_subject: keep as i64,
            max_age: Duration::from_secs(ttl + META_TTL_EXTRA),
            storage: stream::StorageType::File,
            duplicate_window: IDEMPOTENCY_WINDOW,
            allow_direct: true,
            ..Default::default()
        };
        js.create_or_update_stream(stream_config)
            .await
            .map_err(|e| BrokerError::Backend(format!("nats stream: {e}")))?;
        let stream =
            js.get_stream(STREAM).await.map_err(|e| BrokerError::Backend(format!("nats stream: {e}")))?;
        // The bucket's stream is made by hand with the key-value conventions: async-nats'
        // `create_key_value` first reads the account info in a shape NATS 2.9 does not answer.
        let bucket = stream::Config {
            name: format!("KV_{BUCKET}"),
            subjects: vec![format!("$KV.{BUCKET}.>")],
            max_messages_per_subject: 1,
            max_age: Duration::from_secs(config.presence_ttl),
            storage: stream::StorageType::Memory,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        };
        js.create_or_update_stream(bucket)
            .await
            .map_err(|e| BrokerError::Backend(format!("nats presence bucket: {e}")))?;
        let presence = js
            .get_key_value(BUCKET)
            .await
            .map_err(|e| BrokerError::Backend(format!("nats presence bucket: {e}")))?;
        let shared = Arc::new(Shared {
            client,
            js,
            stream,
            presence,
            health: RwLock::new(Health::Unavailable("connecting".into())),
            sink,
            last: Mutex::new(HashMap::new()),
        });
        let fanout = shared.fanout().await?;
        let presence_events = shared
            .client
            .subscribe("sb.e.>")
            .await
            .map_err(|e| BrokerError::Unavailable(format!("nats subscribe: {e}")))?;
        shared.client.flush().await.map_err(unavailable)?;
        *shared.health.write() = Health::Ok;
        let supervisor =
            tokio::spawn(supervisor::supervise(shared.clone(), fanout, presence_events, events_rx));
        Ok(Arc::new(Self { shared, supervisor }))
    }
}

impl Drop for NatsBroker {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

type Fanout = consumer::push::Ordered;

impl Shared {
    /// A new fan-out consumer, from the stream's current end.
    async fn fanout(&self) -> Result<Fanout, BrokerError> {
        let config = consumer::push::OrderedConfig {
            deliver_subject: self.client.new_inbox(),
            filter_subject: "sb.p.>".into(),
            deliver_policy: consumer::DeliverPolicy::New,
            ..Default::default()
        };
        let consumer: consumer::Consumer<consumer::push::OrderedConfig> =
            self.stream.create_consumer(config).await.map_err(unavailable)?;
        let messages = consumer.messages().await.map_err(unavailable)?;
        Ok(messages)
    }

    fn deliver_stored(&self, message: &async_nats::Message) {
        let Some(channel) = channel_of(message.subject.as_str(), "sb.p.") else { return };
        match Stored::decode(message.headers.as_ref(), message.payload.clone()) {
            Ok(s) if s.offset == 0 => {}
            Ok(s) => match s.publication(&channel) {
                Ok(p) => self.sink.deliver(Delivery::Publication(p)),
                Err(e) => tracing::warn!(error = %e, "ignoring a malformed publication"),
            },
            Err(e) => tracing::warn!(error = %e, "ignoring a malformed publication"),
        }
    }

    fn deliver_event(&self, message: &async_nats::Message) {
        let Some(channel) = channel_of(message.subject.as_str(), "sb.e.") else { return };
        match envelope::decode_message(channel, message.payload.clone()) {
            Ok(d @ Delivery::Presence(_)) => self.sink.deliver(d),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "ignoring a malformed presence event"),
        }
    }

    fn check(&self) -> Result<(), BrokerError> {
        match &*self.health.read() {
            Health::Ok => Ok(()),
            Health::Unavailable(why) => Err(BrokerError::Unavailable(format!("nats: {why}"))),
        }
    }

    fn slot(&self, channel: &ChannelName) -> Arc<tokio::sync::Mutex<Option<Last>>> {
        let mut all = self.last.lock();
        if all.len() > 100_000 {
            all.retain(|_, v| Arc::strong_count(v) > 1);
        }
        all.entry(channel.clone()).or_default().clone()
    }

    /// The subject's last message, or `None` when it has none.
    async fn read_last(&self, channel: &ChannelName) -> Result<Option<Last>, BrokerError> {
        match self.stream.get_last_raw_message_by_subject(&subject(channel)).await {
            Ok(m) => {
                let s = Stored::decode(Some(&m.headers), m.payload)?;
                Ok(Some(Last { sequence: m.sequence, offset: s.offset, epoch: s.epoch }))
            }
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Appends offset `last.offset + 1` (or the epoch marker, offset 0, on an empty subject when
    /// `marker`); `Ok(None)` when another publisher got there first.
    async fn append(
        &self,
        channel: &ChannelName,
        last: Option<&Last>,
        body: Bytes,
        options: Option<(&crate::config::ChannelOptions, Option<&str>)>,
    ) -> Result<Option<(Last, bool)>, BrokerError> {
        let (offset, epoch) = match (last, options) {
            (Some(l), Some(_)) => (l.offset + 1, l.epoch.clone()),
            (None, Some(_)) => (1, new_epoch()),
            (_, None) => (0, new_epoch()),
        };
        let mut publish = jetstream::message::PublishMessage::build()
            .payload(body)
            .header(H_OFFSET, offset.to_string().as_str())
            .header(H_EPOCH, &*epoch)
            .expected_last_subject_sequence(last.map_or(0, |l| l.sequence));
        if let Some((o, key)) = options {
            let expires = now_ms() + o.history_ttl * 1000;
            publish = publish
                .header(H_EXPIRES, expires.to_string().as_str())
                .header(H_KEEP, o.history_size.to_string().as_str());
            if let Some(key) = key {
                publish = publish.message_id(format!("{}:{key}", hex(channel.as_str())));
            }
        }
        let ack = self.js.send_publish(subject(channel), publish).await.map_err(unavailable)?;
        match ack.await {
            Ok(ack) if ack.duplicate => {
                let m = self.stream.get_raw_message(ack.sequence).await.map_err(unavailable)?;
                let s = Stored::decode(Some(&m.headers), m.payload)?;
                Ok(Some((Last { sequence: ack.sequence, offset: s.offset, epoch: s.epoch }, true)))
            }
            Ok(ack) => Ok(Some((Last { sequence: ack.sequence, offset, epoch }, false))),
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The channel's last message, creating the epoch marker when it has none.
    async fn top(&self, channel: &ChannelName) -> Result<Last, BrokerError> {
        for _ in 0..PUBLISH_TRIES {
            if let Some(last) = self.read_last(channel).await? {
                return Ok(last);
            }
            if let Some((last, _)) = self.append(channel, None, Bytes::new(), None).await? {
                return Ok(last);
            }
        }
        Err(BrokerError::Backend("nats: could not read the channel's top".into()))
    }

    /// Every stored message of the channel up to stream sequence `until`, oldest first.
    async fn read_all(
        &self,
        channel: &ChannelName,
        until: u64,
        max: usize,
    ) -> Result<Vec<Stored>, BrokerError> {
        let config = consumer::pull::Config {
            filter_subject: subject(channel),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            memory_storage: true,
            ..Default::default()
        };
        let consumer: consumer::PullConsumer =
            self.stream.create_consumer(config).await.map_err(unavailable)?;
        let mut out = Vec::new();
        let result = async {
            loop {
                let mut batch = consumer
                    .fetch()
                    .max_messages(max.clamp(1, 1000))
                    .messages()
                    .await
                    .map_err(unavailable)?;
                let mut got = 0;
                while let Some(m) = batch.next().await {
                    let m = m.map_err(unavailable)?;
                    got += 1;
                    let info = m.info().map_err(unavailable)?;
                    let (seq, pending) = (info.stream_sequence, info.pending);
                    if seq > until {
                        return Ok(());
                    }
                    out.push(Stored::decode(m.headers.as_ref(), m.payload.clone())?);
                    if seq == until || pending == 0 {
                        return Ok(());
                    }
                }
                if got == 0 {
                    return Ok(());
                }
            }
        }
        .await;
        let name = consumer.cached_info().name.clone();
        let _ = self.stream.delete_consumer(&name).await;
        result.map(|()| out)
    }
}

#[async_trait]
impl Broker for NatsBroker {
    async fn publish(&self, request: NewPublication) -> Result<PublishResult, BrokerError> {
        let s = &self.shared;
        s.check()?;
        let body = envelope::encode_body(&request.payload, request.info.as_deref());
        let slot = s.slot(&request.channel);
        let mut last = slot.lock().await;
        for attempt in 0..PUBLISH_TRIES {
            if last.is_none() || attempt > 0 {
                *last = s.read_last(&request.channel).await?;
            }
            let options = Some((&request.options, request.idempotency_key.as_deref()));
            match s.append(&request.channel, last.as_ref(), body.clone(), options).await {
                Ok(Some((written, duplicate))) => {
                    if !duplicate {
                        *last = Some(written.clone());
                    }
                    return Ok(PublishResult { epoch: written.epoch, offset: written.offset, duplicate });
                }
                Ok(None) => {
                    if attempt > 2 {
                        let pause = rand::random::<u64>() % (1 + attempt as u64).min(20);
                        tokio::time::sleep(Duration::from_millis(pause)).await;
                    }
                }
                Err(e) => {
                    *last = None;
                    return Err(e);
                }
            }
        }
        Err(BrokerError::Unavailable("nats: too much contention on the channel".into()))
    }

    async fn history(
        &self,
        channel: &ChannelName,
        query: HistoryQuery,
    ) -> Result<HistoryResult, BrokerError> {
        let s = &self.shared;
        s.check()?;
        let last = s.top(channel).await?;
        let top = StreamTop { epoch: last.epoch.clone(), offset: last.offset };
        let after = match &query.since {
            Some(p) if *p.epoch == *top.epoch => p.offset,
            _ => 0,
        };
        if query.limit == 0 || after >= top.offset {
            return Ok(HistoryResult { top, publications: Vec::new() });
        }
        let stored = s.read_all(channel, last.sequence, (top.offset - after) as usize).await?;
        let keep = stored.last().map_or(0, |l| l.keep);
        let now = now_ms();
        let matching = stored.into_iter().filter(|m| {
            m.epoch == top.epoch && m.offset > after && m.offset + keep > top.offset && m.expires > now
        });
        let chosen: Vec<Stored> = if query.reverse {
            let mut all: Vec<_> = matching.collect();
            all.reverse();
            all.truncate(query.limit);
            all
        } else {
            matching.take(query.limit).collect()
        };
        let publications = chosen.iter().map(|m| m.publication(channel)).collect::<Result<_, _>>()?;
        Ok(HistoryResult { top, publications })
    }

    async fn presence_add(
        &self,
        channel: &ChannelName,
        info: Arc<ClientInfo>,
        announce: bool,
    ) -> Result<(), BrokerError> {
        let s = &self.shared;
        s.check()?;
        let key = format!("{}.{}", hex(channel.as_str()), hex(&info.client));
        let value = Bytes::from(envelope::encode_info(&info));
        let added = match s.presence.create(&key, value.clone()).await {
            Ok(_) => true,
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                s.presence.put(&key, value).await.map_err(unavailable)?;
                false
            }
            Err(e) => return Err(unavailable(e)),
        };
        if added && announce {
            let event = envelope::encode_presence(PresenceKind::Join, &info);
            s.client.publish(event_subject(channel), event).await.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn claim_room(
        &self,
        room: &ChannelName,
        node: &str,
        _ttl: Duration,
    ) -> Result<String, BrokerError> {
        let s = &self.shared;
        s.check()?;
        // In the presence bucket, whose age (presence_ttl) expires a claim nobody renews.
        let key = format!("room.{}", hex(room.as_str()));
        let mine = Bytes::copy_from_slice(node.as_bytes());
        loop {
            let entry = s.presence.entry(&key).await.map_err(unavailable)?;
            let holder = entry.filter(|e| e.operation == kv::Operation::Put);
            let written = match holder {
                None => match s.presence.create(&key, mine.clone()).await {
                    Ok(_) => true,
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => false,
                    Err(e) => return Err(unavailable(e)),
                },
                Some(e) if e.value == mine => match s.presence.update(&key, mine.clone(), e.revision).await {
                    Ok(_) => true,
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => false,
                    Err(e) => return Err(unavailable(e)),
                },
                Some(e) => return Ok(String::from_utf8_lossy(&e.value).into_owned()),
            };
            if written {
                return Ok(node.to_owned());
            }
            // Another node wrote in between: read again.
        }
    }

    async fn presence_remove(
        &self,
        channel: &ChannelName,
        info: Arc<ClientInfo>,
        announce: bool,
    ) -> Result<(), BrokerError> {
        let s = &self.shared;
        s.check()?;
        let key = format!("{}.{}", hex(channel.as_str()), hex(&info.client));
        let present = s
            .presence
            .entry(&key)
            .await
            .map_err(unavailable)?
            .is_some_and(|e| e.operation == kv::Operation::Put);
        if !present {
            return Ok(());
        }
        s.presence.purge(&key).await.map_err(unavailable)?;
        if announce {
            let event = envelope::encode_presence(PresenceKind::Leave, &info);
            s.client.publish(event_subject(channel), event).await.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn presence(&self, channel: &ChannelName) -> Result<Vec<Arc<ClientInfo>>, BrokerError> {
        let s = &self.shared;
        s.check()?;
        let stream = s.js.get_stream(format!("KV_{BUCKET}")).await.map_err(unavailable)?;
        let config = consumer::pull::Config {
            filter_subject: format!("$KV.{BUCKET}.{}.>", hex(channel.as_str())),
            deliver_policy: consumer::DeliverPolicy::LastPerSubject,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            memory_storage: true,
            ..Default::default()
        };
        let consumer: consumer::PullConsumer = stream.create_consumer(config).await.map_err(unavailable)?;
        let mut out = Vec::new();
        let read = async {
            loop {
                let mut batch = consumer.fetch().max_messages(1000).messages().await.map_err(unavailable)?;
                let mut got = 0;
                let mut done = false;
                while let Some(m) = batch.next().await {
                    let m = m.map_err(unavailable)?;
                    got += 1;
                    let deleted = m
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("KV-Operation"))
                        .is_some_and(|v| v.as_str() == "DEL" || v.as_str() == "PURGE");
                    if !deleted && let Ok(info) = envelope::decode_info(&m.payload) {
                        out.push(info);
                    }
                    done = m.info().map(|i| i.pending == 0).unwrap_or(true);
                }
                if got == 0 || done {
                    return Ok::<(), BrokerError>(());
                }
            }
        }
        .await;
        let name = consumer.cached_info().name.clone();
        let _ = stream.delete_consumer(&name).await;
        read.map(|()| out)
    }

    async fn node_subscribe(&self, _channel: &ChannelName) -> Result<(), BrokerError> {
        // The node's one fan-out consumer receives every channel; it exists whenever the
        // broker is healthy, so deliveries flow once this returns Ok.
        self.shared.check()
    }

    async fn node_unsubscribe(&self, _channel: &ChannelName) -> Result<(), BrokerError> {
        Ok(())
    }

    fn health(&self) -> Health {
        self.shared.health.read().clone()
    }

    /// The per-channel cache of last publications is the node's only channel state (history,
    /// epochs and idempotency live in JetStream, with its own limits): entries no publish is
    /// using go, and the next publish of their channel reads its last message again.
    fn sweep(&self, _idle: Duration) -> usize {
        let mut last = self.shared.last.lock();
        let before = last.len();
        last.retain(|_, v| Arc::strong_count(v) > 1);
        before - last.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testutil::backend::Kind;
    use crate::broker::testutil::shared_backend_tests;

    async fn connect(url: String, presence_ttl: u64, sink: Arc<dyn DeliverySink>) -> Arc<dyn Broker> {
        let config = Config { presence_ttl, ..Config::default() };
        NatsBroker::connect(&url, &config, sink).await.expect("connects")
    }

    // JetStream keeps its streams in files: the persistent kind is the same.
    shared_backend_tests!(connect: connect, backend: Kind::Nats, persistent: Kind::Nats, per_channel: false);
}
