//! One input's jitter buffer: packets reordered by RTP time into 20 ms slots, played out one
//! slot per mixer tick once `target` slots are buffered. Bounded: a burst beyond `max` drops
//! the oldest slots, and a buffer that grew past the target sheds a slot per tick, so the delay
//! the mixer adds stays near the target.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;

use super::FRAME;

/// A jump this far (in slots) from what is being played restarts the stream (a new source).
const RESTART_JUMP: u64 = 50;
/// After this many slots with nothing to play, stop concealing and wait for the target again.
const UNDERRUN_SLOTS: u32 = 3;

/// What an input plays in one tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// A packet, with its RFC 6464 level (-dBov, 127 silent) and when it arrived.
    Packet { payload: Bytes, level: Option<u8>, arrived: Instant },
    /// A packet is missing here: conceal it (FEC from `next` when there is one, else PLC).
    Lost { next: Option<Bytes> },
    /// Nothing to play (not started, or the sender stopped).
    Idle,
}

struct Entry {
    payload: Bytes,
    level: Option<u8>,
    arrived: Instant,
}

/// See the module docs.
pub struct Jitter {
    slots: BTreeMap<u64, Entry>,
    /// The next slot to play, once playing.
    next: Option<u64>,
    /// The last RTP time seen, and its extension past wrap-arounds.
    last: Option<(u32, i64)>,
    target: usize,
    max: usize,
    underrun: u32,
    /// Packets dropped because they came after their slot was played, or overflowed.
    pub dropped: u64,
}

impl Jitter {
    /// Plays once `target` slots are buffered (at least 1); holds at most `max`.
    pub fn new(target: usize, max: usize) -> Self {
        let target = target.max(1);
        Self {
            slots: BTreeMap::new(),
            next: None,
            last: None,
            target,
            max: max.max(target + 1),
            underrun: 0,
            dropped: 0,
        }
    }

    /// Slots buffered now.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Takes a packet of RTP time `ts`.
    pub fn push(&mut self, ts: u32, payload: Bytes, level: Option<u8>, now: Instant) {
        let ext = match self.last {
            None => i64::from(ts),
            Some((prev, prev_ext)) => prev_ext + i64::from(ts.wrapping_sub(prev) as i32),
        };
        if ext < 0 {
            // Before the first packet's time by more than it: a reordered packet at the start.
            self.dropped += 1;
            return;
        }
        if self.last.is_none_or(|(_, e)| ext > e) {
            self.last = Some((ts, ext));
        }
        let slot = (ext as u64 + FRAME as u64 / 2) / FRAME as u64;
        if let Some(next) = self.next {
            if slot < next {
                self.dropped += 1;
                return;
            }
            if slot > next + RESTART_JUMP {
                self.slots.clear();
                self.next = None;
            }
        }
        self.slots.insert(slot, Entry { payload, level, arrived: now });
        while self.slots.len() > self.max {
            if let Some((first, _)) = self.slots.pop_first() {
                self.dropped += 1;
                self.next = self.next.map(|n| n.max(first + 1));
            }
        }
    }

    /// The slot to play in this tick.
    pub fn pop(&mut self) -> Slot {
        let next = match self.next {
            Some(n) => n,
            None if self.slots.len() >= self.target => *self.slots.keys().next().unwrap_or(&0),
            None => return Slot::Idle,
        };
        // Grown past the target (a burst, or the sender's clock runs fast): shed the oldest.
        let mut next = next;
        if self.slots.len() > self.target + 2
            && let Some((first, _)) = self.slots.pop_first()
        {
            self.dropped += 1;
            next = next.max(first + 1);
        }
        self.next = Some(next + 1);
        if let Some(e) = self.slots.remove(&next) {
            self.underrun = 0;
            return Slot::Packet { payload: e.payload, level: e.level, arrived: e.arrived };
        }
        if !self.slots.is_empty() {
            self.underrun = 0;
            return Slot::Lost { next: self.slots.get(&(next + 1)).map(|e| e.payload.clone()) };
        }
        self.underrun += 1;
        if self.underrun > UNDERRUN_SLOTS {
            self.next = None;
            return Slot::Idle;
        }
        Slot::Lost { next: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(n: u8) -> Bytes {
        Bytes::from(vec![n])
    }

    fn played(s: Slot) -> Option<u8> {
        match s {
            Slot::Packet { payload, .. } => Some(payload[0]),
            _ => None,
        }
    }

    #[test]
    fn reorders_and_waits_for_the_target() {
        let now = Instant::now();
        let mut j = Jitter::new(2, 10);
        j.push(2 * FRAME, pkt(2), None, now);
        assert_eq!(j.pop(), Slot::Idle, "one slot buffered, target two");
        j.push(FRAME, pkt(1), None, now);
        assert_eq!(played(j.pop()), Some(1));
        assert_eq!(played(j.pop()), Some(2));
    }

    #[test]
    fn a_gap_is_lost_with_the_next_packet_for_fec_and_late_packets_are_dropped() {
        let now = Instant::now();
        let mut j = Jitter::new(1, 10);
        j.push(0, pkt(0), None, now);
        j.push(2 * FRAME, pkt(2), None, now);
        assert_eq!(played(j.pop()), Some(0));
        assert_eq!(j.pop(), Slot::Lost { next: Some(pkt(2)) });
        j.push(FRAME, pkt(1), None, now);
        assert_eq!(j.dropped, 1, "slot 1 was already concealed");
        assert_eq!(played(j.pop()), Some(2));
    }

    #[test]
    fn survives_rtp_time_wrap_around() {
        let now = Instant::now();
        let mut j = Jitter::new(2, 10);
        let start = u32::MAX - FRAME + 1;
        for k in 0..4u32 {
            j.push(start.wrapping_add(k * FRAME), pkt(k as u8), None, now);
        }
        let got: Vec<_> = (0..4).map(|_| played(j.pop())).collect();
        assert_eq!(got, vec![Some(0), Some(1), Some(2), Some(3)]);
    }

    #[test]
    fn stays_bounded_and_goes_idle_when_the_sender_stops() {
        let now = Instant::now();
        let mut j = Jitter::new(2, 6);
        for k in 0..20u32 {
            j.push(k * FRAME, pkt(k as u8), None, now);
        }
        assert!(j.len() <= 6, "bounded: {}", j.len());
        // A burst is shed down towards the target rather than played late.
        let mut ticks = 0;
        while played(j.pop()).is_some() {
            ticks += 1;
        }
        assert!(ticks < 6, "played {ticks} of a 6-slot backlog");
        let tail: Vec<Slot> = (0..UNDERRUN_SLOTS + 1).map(|_| j.pop()).collect();
        assert!(tail.iter().take(UNDERRUN_SLOTS as usize - 1).all(|s| matches!(s, Slot::Lost { .. })));
        assert_eq!(j.pop(), Slot::Idle);
    }
}
