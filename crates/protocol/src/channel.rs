//! Channel names: validated once at the edge, then passed around as [`ChannelName`].

use std::fmt;
use std::sync::Arc;

/// Longest channel name accepted, in bytes.
pub const MAX_CHANNEL_LEN: usize = 255;

/// A validated channel name: 1–255 bytes of `A-Z a-z 0-9 _ - : . @ / =`.
///
/// Cloning is cheap (a reference count), so one name is shared by every subscription to it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

/// Why a channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidChannel {
    /// The name is empty.
    #[error("channel name is empty")]
    Empty,
    /// The name is longer than [`MAX_CHANNEL_LEN`].
    #[error("channel name is longer than {MAX_CHANNEL_LEN} bytes")]
    TooLong,
    /// The name holds a character outside the allowed set.
    #[error("channel name holds {0:?}; allowed are A-Z a-z 0-9 _ - : . @ / = #")]
    BadCharacter(char),
}

impl ChannelName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, InvalidChannel> {
        if name.is_empty() {
            return Err(InvalidChannel::Empty);
        }
        if name.len() > MAX_CHANNEL_LEN {
            return Err(InvalidChannel::TooLong);
        }
        if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || "_-:.@/=#".contains(*c))) {
            return Err(InvalidChannel::BadCharacter(c));
        }
        Ok(Self(Arc::from(name)))
    }

    /// Whether both are the same allocation (a pointer compare; `==` compares the names).
    pub fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The user whose personal channel this is: `NAME#USER` belongs to `USER` (`docs/protocol.md`).
    pub fn owner(&self) -> Option<&str> {
        self.0.rsplit_once('#').map(|(_, user)| user).filter(|u| !u.is_empty())
    }

    /// The namespace: the part before the first `:`, or `""` when there is none.
    pub fn namespace(&self) -> &str {
        self.0.split_once(':').map_or("", |(ns, _)| ns)
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl std::borrow::Borrow<str> for ChannelName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for ChannelName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ChannelName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ChannelName::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_allowed_names_and_splits_namespace() {
        let c = ChannelName::new("chat:lobby/room-1.a@b=c").unwrap();
        assert_eq!(c.namespace(), "chat");
        assert_eq!(ChannelName::new("news").unwrap().namespace(), "");
        assert_eq!(ChannelName::new("a:b:c").unwrap().namespace(), "a");
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(ChannelName::new(""), Err(InvalidChannel::Empty));
        assert_eq!(ChannelName::new(&"a".repeat(256)), Err(InvalidChannel::TooLong));
        assert!(ChannelName::new(&"a".repeat(255)).is_ok());
        assert_eq!(ChannelName::new("a b"), Err(InvalidChannel::BadCharacter(' ')));
        assert_eq!(ChannelName::new("é"), Err(InvalidChannel::BadCharacter('é')));
        assert!(ChannelName::new("a\n").is_err());
    }
}
