//! Room channel names. In a namespace with `rooms = true`, `ns:NAME` is a room and
//! `ns:NAME@CLIENT` the signaling inbox of its participant `CLIENT` (`docs/webrtc.md`). The
//! session enforces who may use an inbox; the rest of the node sees ordinary channels.

use switchboard_protocol::ChannelName;

/// A signaling inbox: whose it is and the room it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbox {
    /// The room channel.
    pub room: ChannelName,
    /// The participant (client id) the inbox belongs to.
    pub client: String,
}

/// The inbox `channel` names, if it is one (the caller checks the namespace has `rooms`).
pub fn inbox(channel: &ChannelName) -> Option<Inbox> {
    let (room, client) = channel.as_str().split_once('@')?;
    Some(Inbox { room: ChannelName::new(room).ok()?, client: client.to_owned() })
}

/// The name of `client`'s inbox in `room`.
pub fn inbox_name(room: &ChannelName, client: &str) -> Option<ChannelName> {
    ChannelName::new(&format!("{room}@{client}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_inbox_names() {
        let c = ChannelName::new("room:lobby@abc").unwrap();
        let i = inbox(&c).unwrap();
        assert_eq!(i.room.as_str(), "room:lobby");
        assert_eq!(i.client, "abc");
        assert_eq!(inbox_name(&i.room, "abc").unwrap(), c);
        assert!(inbox(&ChannelName::new("room:lobby").unwrap()).is_none());
        assert!(inbox(&ChannelName::new("@abc").unwrap()).is_none(), "an inbox needs a room");
    }
}
