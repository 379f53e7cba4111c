//! A session's subscriptions by channel: a vector sorted by name. Every delivery looks its
//! channel up here, and a connection has few subscriptions (at most `max_subscriptions`): a
//! binary search of a few string compares beats hashing the name with SipHash, and an idle
//! connection's one subscription costs one exact-size allocation instead of a hash table's
//! four-bucket minimum (measured: 212 → 40 bytes).

use std::borrow::Borrow;

use switchboard_protocol::ChannelName;

use super::Subscription;

#[derive(Default)]
pub(super) struct Subs(Vec<(ChannelName, Subscription)>);

impl Subs {
    fn find(&self, channel: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(name, _)| name.as_str().cmp(channel))
    }

    pub(super) fn get(&self, channel: &(impl Borrow<str> + ?Sized)) -> Option<&Subscription> {
        self.find(channel.borrow()).ok().map(|i| &self.0[i].1)
    }

    pub(super) fn get_mut(&mut self, channel: &(impl Borrow<str> + ?Sized)) -> Option<&mut Subscription> {
        self.find(channel.borrow()).ok().map(|i| &mut self.0[i].1)
    }

    pub(super) fn contains_key(&self, channel: &(impl Borrow<str> + ?Sized)) -> bool {
        self.find(channel.borrow()).is_ok()
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Adds or replaces `channel`'s subscription.
    pub(super) fn insert(&mut self, channel: ChannelName, sub: Subscription) {
        match self.find(channel.as_str()) {
            Ok(i) => self.0[i].1 = sub,
            Err(i) => {
                // Grown one at a time: subscribing is rare, an idle connection holds the rest.
                self.0.reserve_exact(1);
                self.0.insert(i, (channel, sub));
            }
        }
    }

    pub(super) fn remove(&mut self, channel: &(impl Borrow<str> + ?Sized)) -> Option<Subscription> {
        let i = self.find(channel.borrow()).ok()?;
        let (_, sub) = self.0.remove(i);
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
        Some(sub)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&ChannelName, &Subscription)> {
        self.0.iter().map(|(c, s)| (c, s))
    }

    pub(super) fn drain(&mut self) -> impl Iterator<Item = (ChannelName, Subscription)> + use<> {
        std::mem::take(&mut self.0).into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(offset: u64) -> Subscription {
        Subscription::Live { epoch: Default::default(), offset, present: false, datagram: false }
    }

    fn offset(s: Option<&Subscription>) -> Option<u64> {
        match s? {
            Subscription::Live { offset, .. } => Some(*offset),
            Subscription::Recovering(_) => None,
        }
    }

    #[test]
    fn finds_inserts_replaces_and_removes_by_name() {
        let mut subs = Subs::default();
        for (i, name) in ["b", "a", "c", "ab"].into_iter().enumerate() {
            subs.insert(ChannelName::new(name).unwrap(), live(i as u64));
        }
        assert_eq!(subs.len(), 4);
        assert_eq!(offset(subs.get("a")), Some(1));
        assert_eq!(offset(subs.get("ab")), Some(3));
        assert!(subs.get("d").is_none());
        subs.insert(ChannelName::new("a").unwrap(), live(9));
        assert_eq!((subs.len(), offset(subs.get("a"))), (4, Some(9)));
        let names: Vec<_> = subs.iter().map(|(c, _)| c.as_str().to_owned()).collect();
        assert_eq!(names, ["a", "ab", "b", "c"]);
        assert_eq!(offset(subs.remove("b").as_ref()), Some(0));
        assert!(subs.remove("b").is_none() && !subs.contains_key("b"));
        assert_eq!(subs.drain().count(), 3);
        assert_eq!(subs.len(), 0);
    }
}
