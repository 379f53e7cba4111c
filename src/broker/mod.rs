//! The broker: where publications get their offsets, where history and presence live, and how
//! publications reach every node.
//!
//! # Contract (every implementation; `conformance` checks it)
//!
//! - **Publish is atomic per channel**: assigning the next offset (previous + 1, from 1), appending
//!   to the history and handing the publication to every node's [`DeliverySink`] happen as one step
//!   per channel, so every node sees a channel's publications in offset order, and a publication
//!   that is in the history is (or will be) delivered, and the other way round.
//! - **Epochs**: a stream keeps its epoch while its history is intact. When the history may have
//!   been lost (a new stream, a restart of an in-memory broker, a flushed Redis) the epoch changes,
//!   so no client mistakes a new stream for the one it knew.
//! - **History** keeps at most `history_size` publications for at most `history_ttl` seconds
//!   (from the publish options); reads return publications oldest first (newest first with
//!   `reverse`) and the stream's current top.
//! - **Idempotency**: a publish repeating an `idempotency_key` seen on the channel within
//!   [`IDEMPOTENCY_WINDOW`] returns the first result and stores and delivers nothing.
//! - **Presence** maps client id → info per channel; with `announce`, adding a client that was not
//!   there delivers a join event to every node, removing one that was there a leave event.
//! - **Node interest**: `node_subscribe` and `node_unsubscribe` come in pairs, one pair per local
//!   subscription; a broker that routes per channel counts them and starts receiving a channel on
//!   0 → 1 and stops on 1 → 0, serialized per channel. `node_subscribe` returns only once deliveries
//!   flow, so a history read after it cannot miss a publication. A `node_subscribe` that fails
//!   still counts (it is paired all the same): the broker keeps trying to receive the channels it
//!   counts, for instance after reconnecting to its backend.
//! - **Loss is never silent**: when a broker may have missed deliveries (its connection to the
//!   backend dropped), it calls [`DeliverySink::lost`], and the hub ends the affected connections
//!   so their clients resume from history.
//! - Errors are [`BrokerError`]s, never panics; a broker that cannot reach its backend refuses
//!   publications rather than dropping them.

#[cfg(test)]
pub mod conformance;
pub mod envelope;
mod interest;
pub mod memory;
pub mod nats;
pub mod redis;
pub mod sweep;
#[cfg(test)]
pub mod testutil;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use switchboard_protocol::frame::ClientInfo;
use switchboard_protocol::{ChannelName, Position};

use crate::config::ChannelOptions;
use crate::model::{Delivery, Epoch, Payload, Publication};

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(300);

/// Where a broker hands what it delivers: the node's hub.
pub trait DeliverySink: Send + Sync + 'static {
    /// Hands one delivery over. Must not block: it is called inside the per-channel publish step.
    fn deliver(&self, delivery: Delivery);

    /// Deliveries for `channel` (every channel when `None`) may have been lost: end the local
    /// subscribers' connections with `reason` so that they resume from history.
    fn lost(&self, channel: Option<&ChannelName>, reason: switchboard_protocol::Disconnect);
}

/// Publishes through `broker` and counts the publication in `metrics` (a retried duplicate is
/// not counted): the one way the node publishes, whatever path a publication came by.
pub async fn publish(
    broker: &dyn Broker,
    metrics: &crate::metrics::Metrics,
    request: NewPublication,
) -> Result<PublishResult, BrokerError> {
    let channel = request.channel.clone();
    let result = broker.publish(request).await?;
    if !result.duplicate {
        metrics.publications.add(1);
        metrics.channel_rates.count(&channel, crate::channel_rates::now_seconds());
    }
    Ok(result)
}

/// A publication to make: what a publisher hands the broker, which gives it its offset.
#[derive(Debug, Clone)]
pub struct NewPublication {
    /// The channel.
    pub channel: ChannelName,
    /// The payload.
    pub payload: Payload,
    /// The publishing client, if one did.
    pub info: Option<Arc<ClientInfo>>,
    /// Makes a retried publish store nothing twice.
    pub idempotency_key: Option<String>,
    /// The channel's history size and TTL.
    pub options: ChannelOptions,
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishResult {
    /// The stream's epoch.
    pub epoch: Epoch,
    /// The publication's offset.
    pub offset: u64,
    /// The idempotency key was seen before: nothing was stored.
    pub duplicate: bool,
}

pub use crate::model::StreamTop;

/// A history read.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    /// Only publications after this position (ignored when its epoch is not the stream's).
    pub since: Option<Position>,
    /// At most this many.
    pub limit: usize,
    /// Newest first.
    pub reverse: bool,
}

/// A history read's answer.
#[derive(Debug, Clone)]
pub struct HistoryResult {
    /// The stream's current end.
    pub top: StreamTop,
    /// The publications asked for.
    pub publications: Vec<Arc<Publication>>,
}

/// Is the broker reachable?
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Yes.
    Ok,
    /// No, and why.
    Unavailable(String),
}

/// A broker failure.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The backend is unreachable; nothing was done.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The backend answered something unexpected.
    #[error("broker error: {0}")]
    Backend(String),
    /// The channel does not exist yet and the node holds `max_channels` already (error 106).
    #[error("channel limit: this node holds {0} channels (max_channels)")]
    ChannelLimit(usize),
}

/// See the module docs for the contract.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Publishes: next offset, history append and delivery, atomically per channel.
    async fn publish(&self, request: NewPublication) -> Result<PublishResult, BrokerError>;

    /// Reads a channel's history and current top.
    async fn history(&self, channel: &ChannelName, query: HistoryQuery)
    -> Result<HistoryResult, BrokerError>;

    /// Adds a client to a channel's presence.
    async fn presence_add(
        &self,
        channel: &ChannelName,
        info: Arc<ClientInfo>,
        announce: bool,
    ) -> Result<(), BrokerError>;

    /// Removes a client from a channel's presence.
    async fn presence_remove(
        &self,
        channel: &ChannelName,
        info: Arc<ClientInfo>,
        announce: bool,
    ) -> Result<(), BrokerError>;

    /// Who is present in a channel.
    async fn presence(&self, channel: &ChannelName) -> Result<Vec<Arc<ClientInfo>>, BrokerError>;

    /// The node serving `room`'s WebRTC media: `node` when no other node holds the room (it
    /// then holds it for `ttl`, and a call from the holder renews that), else the holder.
    /// (NATS keeps claims in its presence bucket, whose age is `presence_ttl`.)
    async fn claim_room(&self, room: &ChannelName, node: &str, ttl: Duration) -> Result<String, BrokerError>;

    /// This node has its first local subscriber of `channel`: start receiving its deliveries.
    /// (Brokers that deliver everything to every node need do nothing.)
    async fn node_subscribe(&self, channel: &ChannelName) -> Result<(), BrokerError>;

    /// This node's last local subscriber of `channel` left.
    async fn node_unsubscribe(&self, channel: &ChannelName) -> Result<(), BrokerError>;

    /// Whether the backend is reachable.
    fn health(&self) -> Health;

    /// How many times the connection to the backend was lost and made again (for `/metrics`).
    fn reconnects(&self) -> u64 {
        0
    }

    /// Refuse to create a channel's state beyond `max` channels on this node (0: no limit),
    /// counting in `metrics` (brokers whose channel state lives in the backend, with expiries of
    /// its own, need do nothing).
    fn limit_channels(&self, _max: usize, _metrics: Arc<crate::metrics::Metrics>) {}

    /// Forgets the node-local state of channels idle for `idle`: no local subscribers, no
    /// history left, no publication or idempotency key within `idle`. Returns how many went.
    fn sweep(&self, _idle: Duration) -> usize {
        0
    }
}

/// The broker for `url`: `memory` (the default), or a backend URL.
pub async fn connect(
    config: &crate::config::Config,
    sink: Arc<dyn DeliverySink>,
) -> Result<Arc<dyn Broker>, BrokerError> {
    match config.broker.as_str() {
        "" | "memory" => Ok(Arc::new(memory::MemoryBroker::new(sink))),
        url if url.starts_with("redis://") => {
            Ok(Arc::new(redis::RedisBroker::connect(url, config.presence_ttl, sink).await?))
        }
        url if url.starts_with("nats://") => nats::NatsBroker::connect(url, config, sink).await,
        other => Err(BrokerError::Unavailable(format!(
            "unknown broker {other:?}: use memory, redis://HOST:PORT or nats://HOST:PORT"
        ))),
    }
}

/// A new random epoch.
pub fn new_epoch() -> Epoch {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    let s: String = rand::rng().sample_iter(&Alphanumeric).take(8).map(char::from).collect();
    Arc::from(s)
}
