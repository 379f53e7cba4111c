//! The Redis broker (Redis 6.2 or later): nodes share channels, history and presence through one
//! Redis.
//!
//! - **Publish** is one Lua script ([`scripts`]): idempotency check, next offset, history append
//!   (a stream trimmed to `history_size`, entries stamped with their expiry from Redis' own
//!   clock) and `PUBLISH` of the publication with its offset and epoch to the channel's topic.
//!   Redis runs scripts one at a time, so every node receives a channel's publications in offset
//!   order, and a publication in the history was published, and the other way round.
//! - **Epochs** live in the channel's meta hash; when it is gone (Redis flushed or restarted
//!   without persistence, or everything expired) the next publish or read creates a new one.
//! - **Fan-out**: one pub/sub connection per node, subscribed to the topics of the channels the
//!   node has subscribers for ([`super::interest`]).
//! - **Presence**: a hash of infos and a sorted set of expiries per channel; entries a connection
//!   stops refreshing (its node died) vanish after `presence_ttl`.
//! - **Losing Redis**: a supervisor task watches the connections (the pub/sub stream ending, a
//!   failed ping, a failed command). It reports [`Health::Unavailable`], tells the hub deliveries
//!   were lost ([`DeliverySink::lost`], code 3004, so clients resume from history elsewhere or
//!   later), reconnects with backoff, resubscribes every counted channel and only then reports
//!   healthy. Meanwhile every operation fails with [`BrokerError::Unavailable`].

mod scripts;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use switchboard_protocol::frame::ClientInfo;
use switchboard_protocol::{ChannelName, Disconnect};
use tokio::sync::Notify;

use self::scripts::{Keys, META_TTL_EXTRA, Scripts};
use super::interest::Interests;
use super::{
    Broker, BrokerError, DeliverySink, Health, HistoryQuery, HistoryResult, IDEMPOTENCY_WINDOW,
    NewPublication, PublishResult, StreamTop, envelope, new_epoch,
};
use crate::model::PresenceKind;

/// How long connecting, a command and a (un)subscribe may take before Redis counts as gone.
const TIMEOUT: Duration = Duration::from_secs(3);
/// How often the connections are pinged when nothing else shows they are alive.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Reconnect backoff: from the first to the last, doubling, with jitter.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// See the module docs.
pub struct RedisBroker {
    shared: Arc<Shared>,
    supervisor: tokio::task::JoinHandle<()>,
}

struct Shared {
    client: redis::Client,
    url: String,
    /// The command connection, while connected.
    conn: RwLock<Option<MultiplexedConnection>>,
    /// The pub/sub connection's sink and its generation, while connected.
    pubsub: Mutex<Option<(u64, PubSubSink)>>,
    generation: AtomicU64,
    health: RwLock<Health>,
    /// Channels subscribed on the pub/sub connection, with the generation they were subscribed on.
    interests: Interests<u64>,
    sink: Arc<dyn DeliverySink>,
    scripts: Scripts,
    presence_ttl: u64,
    /// A command failed for a connection reason: the supervisor checks now.
    suspect: Notify,
    reconnects: AtomicU64,
}

type Connected = (MultiplexedConnection, PubSubSink, PubSubStream);

impl RedisBroker {
    /// Connects to the Redis at `url` (`redis://[:PASSWORD@]HOST:PORT[/DB]`). Fails when the
    /// first connection cannot be made; after that, reconnects by itself.
    pub async fn connect(
        url: &str,
        presence_ttl: u64,
        sink: Arc<dyn DeliverySink>,
    ) -> Result<Self, BrokerError> {
        let client = redis::Client::open(url)
            .map_err(|e| BrokerError::Unavailable(format!("invalid redis URL {url:?}: {e}")))?;
        let shared = Arc::new(Shared {
            client,
            url: url.to_owned(),
            conn: RwLock::new(None),
            pubsub: Mutex::new(None),
            generation: AtomicU64::new(0),
            health: RwLock::new(Health::Unavailable("connecting".into())),
            interests: Interests::new(),
            sink,
            scripts: Scripts::new(),
            presence_ttl,
            suspect: Notify::new(),
            reconnects: AtomicU64::new(0),
        });
        let first = shared.open().await?;
        shared.install(first.0, first.1.clone()).await?;
        let supervisor = tokio::spawn(supervise(shared.clone(), first.2));
        Ok(Self { shared, supervisor })
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

impl Shared {
    async fn open(&self) -> Result<Connected, BrokerError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        let down = |e: String| BrokerError::Unavailable(format!("cannot reach redis at {}: {e}", self.url));
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| down(e.to_string()))?;
        let pubsub = tokio::time::timeout(TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| down("timed out".into()))?
            .map_err(|e| down(e.to_string()))?;
        let (sink, stream) = pubsub.split();
        Ok((conn, sink, stream))
    }

    /// Makes a new connection the current one: resubscribes every counted channel, then
    /// reports healthy.
    async fn install(&self, conn: MultiplexedConnection, sink: PubSubSink) -> Result<(), BrokerError> {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        *self.conn.write() = Some(conn);
        *self.pubsub.lock() = Some((generation, sink.clone()));
        let resubscribed = self
            .interests
            .restart(
                |g| *g != generation,
                |channel| {
                    let mut sink = sink.clone();
                    async move { subscribe_topic(&mut sink, &channel).await.map(|()| generation) }
                },
            )
            .await;
        if let Err(e) = resubscribed {
            self.disconnected(e.to_string());
            return Err(e);
        }
        *self.health.write() = Health::Ok;
        Ok(())
    }

    /// The connections are gone: refuse everything until the supervisor is back.
    fn disconnected(&self, why: String) {
        *self.conn.write() = None;
        *self.pubsub.lock() = None;
        *self.health.write() = Health::Unavailable(why);
    }

    fn conn(&self) -> Result<MultiplexedConnection, BrokerError> {
        self.conn.read().clone().ok_or_else(|| self.unavailable())
    }

    fn unavailable(&self) -> BrokerError {
        match &*self.health.read() {
            Health::Unavailable(why) => BrokerError::Unavailable(format!("redis: {why}")),
            Health::Ok => BrokerError::Unavailable("redis: not connected".into()),
        }
    }

    /// A command's error, as the contract wants it; connection trouble wakes the supervisor.
    fn failed(&self, e: redis::RedisError) -> BrokerError {
        if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
            self.suspect.notify_one();
            BrokerError::Unavailable(format!("redis: {e}"))
        } else {
            BrokerError::Backend(format!("redis: {e}"))
        }
    }

    fn dispatch(&self, msg: redis::Msg) {
        let Some(channel) = scripts::channel_of_topic(msg.get_channel_name()) else {
            return;
        };
        let payload = bytes::Bytes::copy_from_slice(msg.get_payload_bytes());
        match envelope::decode_message(channel, payload) {
            Ok(delivery) => self.sink.deliver(delivery),
            Err(e) => {
                tracing::warn!(topic = msg.get_channel_name(), error = %e, "ignoring a malformed message")
            }
        }
    }

    /// Both connections answer a ping.
    async fn alive(&self) -> bool {
        let Some(mut conn) = self.conn.read().clone() else { return false };
        let Some((_, mut sink)) = self.pubsub.lock().clone() else { return false };
        let pings = async {
            let a: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
            let b: redis::RedisResult<redis::Value> = sink.ping().await;
            a.is_ok() && b.is_ok()
        };
        tokio::time::timeout(TIMEOUT, pings).await.unwrap_or(false)
    }
}

async fn subscribe_topic(sink: &mut PubSubSink, channel: &ChannelName) -> Result<(), BrokerError> {
    match tokio::time::timeout(TIMEOUT, sink.subscribe(Keys::new(channel).topic())).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(BrokerError::Unavailable(format!("redis subscribe: {e}"))),
        Err(_) => Err(BrokerError::Unavailable("redis subscribe timed out".into())),
    }
}

/// Reads the pub/sub stream until the connection is lost, then reconnects with backoff.
async fn supervise(shared: Arc<Shared>, mut stream: PubSubStream) {
    loop {
        let why = pump(&shared, &mut stream).await;
        tracing::warn!(url = %shared.url, reason = %why, "lost the connection to redis; reconnecting");
        shared.disconnected(why);
        shared.sink.lost(None, Disconnect::BROKER_UNAVAILABLE);
        let mut backoff = BACKOFF.0;
        stream = loop {
            tokio::time::sleep(backoff.mul_f64(0.5 + rand::random::<f64>() / 2.0)).await;
            backoff = (backoff * 2).min(BACKOFF.1);
            match shared.open().await {
                Ok((conn, sink, stream)) => match shared.install(conn, sink).await {
                    Ok(()) => break stream,
                    Err(e) => {
                        // A subscription may have started on the half-installed connection.
                        shared.sink.lost(None, Disconnect::BROKER_UNAVAILABLE);
                        tracing::debug!(error = %e, "redis resubscribe failed");
                    }
                },
                Err(e) => {
                    tracing::debug!(error = %e, "redis reconnect failed");
                    *shared.health.write() = Health::Unavailable(e.to_string());
                }
            }
        };
        shared.reconnects.fetch_add(1, Ordering::Relaxed);
        tracing::info!(url = %shared.url, "reconnected to redis");
    }
}

/// Delivers pub/sub messages; returns why the connection is considered lost.
async fn pump(shared: &Shared, stream: &mut PubSubStream) -> String {
    let mut ticker = tokio::time::interval(PING_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => shared.dispatch(msg),
                None => return "connection closed".into(),
            },
            _ = ticker.tick() => {
                if !shared.alive().await {
                    return "ping failed".into();
                }
            }
            _ = shared.suspect.notified() => {
                if !shared.alive().await {
                    return "command failed and ping failed".into();
                }
            }
        }
    }
}

#[async_trait]
impl Broker for RedisBroker {
    async fn publish(&self, request: NewPublication) -> Result<PublishResult, BrokerError> {
        let s = &self.shared;
        let mut conn = s.conn()?;
        let keys = Keys::new(&request.channel);
        let body = envelope::encode_body(&request.payload, request.info.as_deref());
        let idem = request.idempotency_key.as_deref();
        let reply: redis::Value = s
            .scripts
            .publish
            .key(keys.meta())
            .key(keys.history())
            .key(keys.idempotency(idem.unwrap_or("")))
            .arg(keys.topic())
            .arg(new_epoch().as_bytes())
            .arg(body.as_ref())
            .arg(request.options.history_size)
            .arg(request.options.history_ttl)
            .arg(META_TTL_EXTRA)
            .arg(IDEMPOTENCY_WINDOW.as_secs())
            .arg(if idem.is_some() { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await
            .map_err(|e| s.failed(e))?;
        let (epoch, offset, duplicate) = scripts::parse_publish(&reply)?;
        Ok(PublishResult { epoch, offset, duplicate })
    }

    async fn history(
        &self,
        channel: &ChannelName,
        query: HistoryQuery,
    ) -> Result<HistoryResult, BrokerError> {
        let s = &self.shared;
        let mut conn = s.conn()?;
        let keys = Keys::new(channel);
        let (since_epoch, since_offset) = match &query.since {
            Some(p) => (p.epoch.as_str(), p.offset),
            None => ("", 0),
        };
        let reply: redis::Value = s
            .scripts
            .history
            .key(keys.meta())
            .key(keys.history())
            .arg(new_epoch().as_bytes())
            .arg(META_TTL_EXTRA)
            .arg(since_epoch)
            .arg(since_offset)
            .arg(query.limit)
            .arg(if query.reverse { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await
            .map_err(|e| s.failed(e))?;
        let (epoch, offset, publications) = scripts::parse_history(channel, reply)?;
        Ok(HistoryResult { top: StreamTop { epoch, offset }, publications })
    }

    async fn presence_add(
        &self,
        channel: &ChannelName,
        info: Arc<ClientInfo>,
        announce: bool,
    ) -> Result<(), BrokerError> {
        let s = &self.shared;
        let mut conn = s.conn()?;
        let keys = Keys::new(channel);
        let reply: redis::Value = s
            .scripts
            .presence_add
            .key(keys.presence())
            .key(keys.presence_expiry())
            .arg(&info.client)
            .arg(envelope::encode_info(&info))
            .arg(s.presence_ttl)
            .arg(if announce { "1" } else { "0" })
            .arg(keys.topic())
            .arg(envelope::encode_presence(PresenceKind::Join, &info).as_ref())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| s.failed(e))?;
        let _added = scripts::parse_flag(&reply);
        Ok(())
    }

    async fn claim_room(&self, room: &ChannelName, node: &str, ttl: Duration) -> Result<String, BrokerError> {
        let s = &self.shared;
        let mut conn = s.conn()?;
        s.scripts
            .claim_room
            .key(Keys::new(room).room_node())
            .arg(node)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| s.failed(e))
    }

    async fn presence_remove(
        &self,
        channel: &ChannelName,
        info: Arc<ClientInfo>,
        announce: bool,
    ) -> Result<(), BrokerError> {
        let s = &self.shared;
        let mut conn = s.conn()?;
        let keys = Keys::new(channel);
        let _: redis::Value = s
            .scripts
            .presence_remove
            .key(keys.presence())
            .key(keys.presence_expiry())
            .arg(&info.client)
            .arg(if announce { "1" } else { "0" })
            .arg(keys.topic())
            .arg(envelope::encode_presence(PresenceKind::Leave, &info).as_ref())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| s.failed(e))?;
        Ok(())
    }

    async fn presence(&self, channel: &ChannelName) -> Result<Vec<Arc<ClientInfo>>, BrokerError> {
        let s = &self.shared;
        let mut conn = s.conn()?;
        let keys = Keys::new(channel);
        let reply: redis::Value = s
            .scripts
            .presence
            .key(keys.presence())
            .key(keys.presence_expiry())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| s.failed(e))?;
        scripts::parse_infos(reply)
    }

    async fn node_subscribe(&self, channel: &ChannelName) -> Result<(), BrokerError> {
        let s = &self.shared;
        s.interests
            .subscribe(channel, || async {
                let (generation, mut sink) = s.pubsub.lock().clone().ok_or_else(|| s.unavailable())?;
                subscribe_topic(&mut sink, channel).await.inspect_err(|_| s.suspect.notify_one())?;
                Ok(generation)
            })
            .await
    }

    async fn node_unsubscribe(&self, channel: &ChannelName) -> Result<(), BrokerError> {
        let s = &self.shared;
        s.interests
            .unsubscribe(channel, |generation| async move {
                let current = s.pubsub.lock().clone();
                if let Some((g, mut sink)) = current
                    && g == generation
                {
                    let topic = Keys::new(channel).topic();
                    let _ = tokio::time::timeout(TIMEOUT, sink.unsubscribe(topic)).await;
                }
            })
            .await;
        Ok(())
    }

    fn health(&self) -> Health {
        self.shared.health.read().clone()
    }

    fn reconnects(&self) -> u64 {
        self.shared.reconnects.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::conformance::CollectingSink;
    use crate::broker::testutil::backend::{Backend, Kind, free_port};
    use crate::broker::testutil::{self, shared_backend_tests};

    async fn connect(url: String, presence_ttl: u64, sink: Arc<dyn DeliverySink>) -> Arc<dyn Broker> {
        Arc::new(RedisBroker::connect(&url, presence_ttl, sink).await.expect("connects"))
    }

    shared_backend_tests!(connect: connect, backend: Kind::Redis, persistent: Kind::RedisPersistent, per_channel: true);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restart_without_persistence_changes_the_epoch() {
        let Some(mut backend) = Backend::start(Kind::Redis) else { return };
        let make = testutil::on_backend(connect, backend.url(), 60);
        testutil::survives_a_backend_restart(&make, &mut backend, false).await;
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_a_clear_start_up_error() {
        let sink = Arc::new(CollectingSink::default());
        let err = RedisBroker::connect(&format!("redis://127.0.0.1:{}", free_port()), 60, sink)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, BrokerError::Unavailable(ref m) if m.contains("cannot reach redis")), "{err}");
    }
}
