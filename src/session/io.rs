//! What a session asks of its driver ([`Op`], answered with an [`OpResult`]) and what it wants
//! sent or done ([`Output`]): the session's whole vocabulary with the outside world.

#[allow(unused_imports)] // named in the docs
use super::Session;

use std::sync::Arc;

use serde_json::value::RawValue;
use switchboard_protocol::ChannelName;
use switchboard_protocol::Disconnect;
use switchboard_protocol::frame::{ClientInfo, Notice, Reply};

use crate::app_proxy::{AppCall, AppError};
use crate::broker::{BrokerError, HistoryQuery, HistoryResult, NewPublication, PublishResult, StreamTop};
use crate::model::{Delivery, Publication};
use crate::rooms::Inbox;
use crate::rules::Denied;

/// An operation's id, to match its result.
pub type OpId = u64;

/// Work for the driver.
#[derive(Debug)]
pub enum Op {
    /// Register this connection in the hub for `channel`, then read the history with `query`;
    /// answer [`OpResult::History`].
    Subscribe {
        /// The channel.
        channel: ChannelName,
        /// The history read.
        query: HistoryQuery,
    },
    /// Remove this connection from the hub for `channel`. No result.
    Unsubscribe {
        /// The channel.
        channel: ChannelName,
    },
    /// Publish; answer [`OpResult::Published`].
    Publish(NewPublication),
    /// Publish to a signaling inbox if its participant is in the room ([`crate::rules::Rules::signal_target`]);
    /// answer [`OpResult::Published`] or [`OpResult::Refused`].
    Signal {
        /// The inbox.
        inbox: Inbox,
        /// The publication to it.
        request: NewPublication,
    },
    /// Read history; answer [`OpResult::History`].
    History {
        /// The channel.
        channel: ChannelName,
        /// The read.
        query: HistoryQuery,
    },
    /// Read presence; answer [`OpResult::Presence`].
    Presence {
        /// The channel.
        channel: ChannelName,
    },
    /// Add the client to presence. No result.
    PresenceAdd {
        /// The channel.
        channel: ChannelName,
        /// The client.
        info: Arc<ClientInfo>,
        /// Send a join event.
        announce: bool,
    },
    /// Take client id `client` on this node, ending a connection that still holds it and
    /// waiting for its clean-up (presence); answer [`OpResult::Claimed`].
    Claim {
        /// The client id.
        client: String,
    },
    /// Call the application's backend, then publish what its answer asks for (as the server);
    /// answer [`OpResult::Rpc`]. The session runs one at a time.
    Rpc(AppCall),
    /// Remove the client from presence. No result.
    PresenceRemove {
        /// The channel.
        channel: ChannelName,
        /// The client.
        info: Arc<ClientInfo>,
        /// Send a leave event.
        announce: bool,
    },
}

/// The result of an [`Op`].
#[derive(Debug)]
pub enum OpResult {
    /// Of `Subscribe` and `History`.
    History(Result<HistoryResult, BrokerError>),
    /// Of `Publish`.
    Published(Result<PublishResult, BrokerError>),
    /// Of `Presence`.
    Presence(Result<Vec<Arc<ClientInfo>>, BrokerError>),
    /// Of `Signal`: the rules refused it (the target is not in the room); nothing was published.
    Refused(Denied),
    /// Of `Claim`: the client id is this connection's.
    Claimed,
    /// Of `Rpc`: the backend's result, once its publications are out.
    Rpc(Result<Box<RawValue>, AppError>),
}

/// What the session wants done.
#[derive(Debug)]
///
/// Replies and operations are boxed: they are large (144 and 152 bytes) and rare, while an output
/// is moved four times per delivery (into the session's queue, out, to the transport).
pub enum Output {
    /// Send a reply (one-way transports turn `connect` and `subscribe` replies into events).
    Reply(Box<Reply>),
    /// Send a history reply; its publications keep their shared encodings.
    History {
        /// The command id.
        id: u64,
        /// The stream's top.
        top: StreamTop,
        /// The publications.
        publications: Vec<Arc<Publication>>,
    },
    /// Send a publication or a join/leave event.
    Deliver(Delivery),
    /// Send a ping (one-way transports: a heartbeat).
    Ping,
    /// Tell the client a subscription ended or its token expires soon.
    Notice(Notice),
    /// Run an operation; those that answer are fed back with [`Session::handle_result`].
    Op(OpId, Box<Op>),
    /// End the connection. The session is closed; call [`Session::close`] for the clean-up ops.
    Disconnect(Disconnect),
}
