//! Resume decisions: given the position a client holds and what the history holds, what to
//! replay and whether continuity is kept. Shared by every transport, so they all resume alike.

use std::sync::Arc;

use switchboard_protocol::{Disconnect, Position};

use crate::broker::HistoryResult;
use crate::model::{Epoch, Publication};

/// The outcome of a resume.
#[derive(Debug)]
pub struct Recovery {
    /// Whether the client's position was honoured: the replay joins it to the live stream.
    pub recovered: bool,
    /// Where the client stands before the replay.
    pub epoch: Epoch,
    /// See `epoch`.
    pub offset: u64,
    /// Publications to replay, oldest first.
    pub publications: Vec<Arc<Publication>>,
    /// More publications follow the replay than `limit` allowed.
    pub truncated: bool,
}

/// Decides a resume from `since` over `history`, read with `since` and a limit of `limit + 1`.
pub fn recover(since: Option<&Position>, history: HistoryResult, limit: usize) -> Recovery {
    let top = history.top;
    let reset = |recovered| Recovery {
        recovered,
        epoch: top.epoch.clone(),
        offset: top.offset,
        publications: Vec::new(),
        truncated: false,
    };
    // No position: nothing to recover, so the client must load its state (`recovered: false`).
    let Some(since) = since else {
        return reset(false);
    };
    if *since.epoch != *top.epoch || since.offset > top.offset {
        return reset(false);
    }
    if since.offset == top.offset {
        return reset(true);
    }
    let mut publications = history.publications;
    let contiguous = publications.first().is_some_and(|p| p.offset == since.offset + 1);
    if !contiguous {
        return reset(false);
    }
    let truncated = publications.len() > limit;
    publications.truncate(limit);
    if !truncated && publications.last().map(|p| p.offset) != Some(top.offset) {
        return reset(false);
    }
    Recovery { recovered: true, epoch: top.epoch, offset: since.offset, publications, truncated }
}

/// Whether two epochs are one. Usually the same allocation (the broker's stream hands its epoch
/// to its publications and its history replies): then the subscriber's copy, a cache miss per
/// delivery at scale, is not read.
fn same_epoch(a: &Epoch, b: &Epoch) -> bool {
    Arc::ptr_eq(a, b) || **a == **b
}

/// Checks that `p` continues a live subscription at `(epoch, offset)`: `Ok(true)` when it is the
/// next one (and `offset` advanced), `Ok(false)` when it was already delivered. A gap or another
/// epoch means the subscription can no longer vouch for continuity.
pub fn advance(epoch: &Epoch, offset: &mut u64, p: &Publication) -> Result<bool, Disconnect> {
    if !same_epoch(&p.epoch, epoch) || p.offset > *offset + 1 {
        return Err(Disconnect::INSUFFICIENT_STATE);
    }
    if p.offset == *offset + 1 {
        *offset = p.offset;
        return Ok(true);
    }
    Ok(false)
}

/// Latest-wins continuation for datagram subscriptions: `true` (and the position moves) when `p`
/// is newer than what was sent, or from a new epoch; older and repeated offsets are dropped. Gaps
/// are expected here: datagram delivery never promised every publication.
pub fn latest_wins(epoch: &mut Epoch, offset: &mut u64, p: &Publication) -> bool {
    if !same_epoch(&p.epoch, epoch) {
        *epoch = p.epoch.clone();
        *offset = p.offset;
        return true;
    }
    if p.offset > *offset {
        *offset = p.offset;
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::StreamTop;
    use crate::model::Payload;
    use switchboard_protocol::ChannelName;

    fn history(epoch: &str, top: u64, offsets: impl IntoIterator<Item = u64>) -> HistoryResult {
        let ch = ChannelName::new("a").unwrap();
        HistoryResult {
            top: StreamTop { epoch: epoch.into(), offset: top },
            publications: offsets
                .into_iter()
                .map(|o| {
                    Arc::new(Publication::new(ch.clone(), o, epoch.into(), Payload::Json("1".into()), None))
                })
                .collect(),
        }
    }

    fn pos(epoch: &str, offset: u64) -> Position {
        Position { epoch: epoch.into(), offset }
    }

    #[tokio::test]
    async fn replays_what_follows_the_position() {
        let r = recover(Some(&pos("e", 3)), history("e", 6, 4..=6), 100);
        assert!(r.recovered && !r.truncated);
        assert_eq!(r.offset, 3);
        assert_eq!(r.publications.iter().map(|p| p.offset).collect::<Vec<_>>(), vec![4, 5, 6]);
    }

    #[tokio::test]
    async fn no_position_or_an_up_to_date_one_starts_live() {
        let r = recover(None, history("e", 6, 1..=6), 100);
        assert!(!r.recovered && r.publications.is_empty(), "a fresh subscription has no continuity");
        assert_eq!(r.offset, 6);
        let r = recover(Some(&pos("e", 6)), history("e", 6, []), 100);
        assert!(r.recovered && r.publications.is_empty());
    }

    #[tokio::test]
    async fn says_so_when_continuity_is_lost() {
        let gone = recover(Some(&pos("e", 1)), history("e", 9, 5..=9), 100);
        assert!(!gone.recovered, "publications 2..4 left the history");
        assert_eq!((gone.offset, gone.publications.len()), (9, 0));
        let other_epoch = recover(Some(&pos("old", 3)), history("e", 9, 1..=9), 100);
        assert!(!other_epoch.recovered);
        assert_eq!(&*other_epoch.epoch, "e");
        let future = recover(Some(&pos("e", 12)), history("e", 9, []), 100);
        assert!(!future.recovered);
    }

    #[tokio::test]
    async fn marks_a_replay_longer_than_the_limit() {
        let r = recover(Some(&pos("e", 0)), history("e", 10, 1..=4), 3);
        assert!(r.truncated && r.recovered);
        assert_eq!(r.publications.len(), 3);
    }
}
