//! Forwarding decisions of the SFU, pure and time passed in: which simulcast layer a receiving
//! m-line gets, and when it may switch (only at a keyframe of the new layer, or the picture
//! breaks). The engine asks for a keyframe whenever [`Verdict::keyframe`] says one is awaited.

use std::time::{Duration, Instant};

use str0m::media::Rid;

/// A layer not seen for this long is taken as paused by the publisher (bandwidth, CPU).
pub const LAYER_IDLE: Duration = Duration::from_millis(1200);

/// The layers of a published video track and when each was last seen.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    rids: Vec<Rid>,
    seen: Vec<Option<Instant>>,
}

impl Layers {
    /// `rids` low to high, as the publisher offered them; empty without simulcast.
    pub fn new(rids: Vec<Rid>) -> Self {
        let seen = vec![None; rids.len()];
        Self { rids, seen }
    }

    /// The rids, low to high.
    pub fn rids(&self) -> &[Rid] {
        &self.rids
    }

    /// Notes a frame of layer `rid`.
    pub fn saw(&mut self, rid: Option<Rid>, now: Instant) {
        if let Some(i) = rid.and_then(|r| self.rids.iter().position(|x| *x == r)) {
            self.seen[i] = Some(now);
        }
    }

    fn active(&self, i: usize, now: Instant) -> bool {
        self.seen[i].is_some_and(|t| now.saturating_duration_since(t) < LAYER_IDLE)
    }

    /// The layer to send a receiver that wants `want` (`None`: the highest): that one while the
    /// publisher sends it, else the best lower one sent, else the lowest higher one.
    pub fn target(&self, want: Option<Rid>, now: Instant) -> Option<Rid> {
        if self.rids.is_empty() {
            return None;
        }
        let top = self.rids.len() - 1;
        let w = want.and_then(|r| self.rids.iter().position(|x| *x == r)).unwrap_or(top);
        let pick = (0..=w)
            .rev()
            .find(|&i| self.active(i, now))
            .or_else(|| (w + 1..=top).find(|&i| self.active(i, now)));
        Some(self.rids[pick.unwrap_or(w)])
    }
}

/// What one receiving m-line is being sent.
#[derive(Debug, Clone, Default)]
pub struct Forward {
    /// The layer wanted (`None`: the highest).
    pub want: Option<Rid>,
    /// The layer being sent; `None` until the first keyframe went out.
    current: Option<Option<Rid>>,
}

/// Whether to send a frame, and whether a keyframe of the target layer is awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Send this frame.
    pub send: bool,
    /// Ask the publisher for a keyframe of the target layer.
    pub keyframe: bool,
}

impl Forward {
    /// The layer being sent; `None` until the first keyframe went out.
    pub fn current(&self) -> Option<Option<Rid>> {
        self.current
    }

    /// Starts over (new source): the next frame sent must be a keyframe.
    pub fn restart(&mut self) {
        self.current = None;
    }

    /// Decides for a video frame of layer `rid` while `target` is the layer to send.
    pub fn video(&mut self, rid: Option<Rid>, keyframe: bool, target: Option<Rid>) -> Verdict {
        if self.current == Some(target) {
            return Verdict { send: rid == target, keyframe: false };
        }
        if rid == target && keyframe {
            self.current = Some(target);
            return Verdict { send: true, keyframe: false };
        }
        // Keep sending the old layer until the new one can start cleanly.
        Verdict { send: self.current.is_some_and(|c| c == rid), keyframe: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rids() -> Vec<Rid> {
        vec!["q".into(), "h".into(), "f".into()]
    }

    #[test]
    fn target_falls_back_to_the_best_layer_being_sent() {
        let t0 = Instant::now();
        let mut l = Layers::new(rids());
        assert_eq!(l.target(None, t0), Some("f".into()), "nothing seen yet: what was asked");
        l.saw(Some("q".into()), t0);
        l.saw(Some("h".into()), t0);
        assert_eq!(l.target(None, t0), Some("h".into()), "f is not being sent");
        assert_eq!(l.target(Some("q".into()), t0), Some("q".into()));
        l.saw(Some("f".into()), t0);
        assert_eq!(l.target(None, t0), Some("f".into()));
        let later = t0 + LAYER_IDLE + Duration::from_millis(1);
        l.saw(Some("q".into()), later);
        assert_eq!(l.target(Some("h".into()), later), Some("q".into()), "h went idle");
        assert_eq!(Layers::new(Vec::new()).target(None, t0), None);
    }

    #[test]
    fn switches_only_at_a_keyframe_of_the_new_layer() {
        let (q, f) = (Some(Rid::from("q")), Some(Rid::from("f")));
        let mut fw = Forward::default();
        assert_eq!(fw.video(f, false, f), Verdict { send: false, keyframe: true }, "start at a keyframe");
        assert_eq!(fw.video(f, true, f), Verdict { send: true, keyframe: false });
        assert_eq!(fw.video(q, false, f), Verdict { send: false, keyframe: false }, "other layers dropped");
        assert_eq!(fw.video(f, false, f), Verdict { send: true, keyframe: false });
        // The receiver asks for q: f keeps flowing until q's keyframe.
        assert_eq!(fw.video(f, false, q), Verdict { send: true, keyframe: true });
        assert_eq!(fw.video(q, false, q), Verdict { send: false, keyframe: true });
        assert_eq!(fw.video(q, true, q), Verdict { send: true, keyframe: false });
        assert_eq!(fw.video(f, true, q), Verdict { send: false, keyframe: false });
        fw.restart();
        assert!(!fw.video(q, false, q).send, "a new source starts at a keyframe");
    }

    #[test]
    fn without_simulcast_waits_for_the_first_keyframe_only() {
        let mut fw = Forward::default();
        assert!(!fw.video(None, false, None).send);
        assert!(fw.video(None, true, None).send);
        assert!(fw.video(None, false, None).send);
    }
}
