//! The mixer's sans-IO core: packets in (per input, with RTP time and level), one tick per 20 ms
//! with the time passed in, encoded packets out: one shared mix for every listener who is not
//! speaking, and one mix-minus (everyone but themselves) per current speaker who listens.
//!
//! Cost grows with the speakers, not the room: an input whose packets carry an RFC 6464 level is
//! decoded only while it is one of the loudest few; one without is decoded to measure it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::codec::{Decoder, Encoder};
use super::jitter::{Jitter, Slot};
use super::limiter::Limiter;
use super::{FRAME, select};

/// How the mixer runs.
#[derive(Debug, Clone)]
pub struct MixConfig {
    /// At most this many inputs are mixed at once (the loudest).
    pub speakers: usize,
    /// Jitter buffer target, in 20 ms frames.
    pub jitter_frames: usize,
    /// Opus bitrate of each output stream, bits/s.
    pub bitrate: i32,
}

impl Default for MixConfig {
    fn default() -> Self {
        Self { speakers: 3, jitter_frames: 2, bitrate: 32_000 }
    }
}

/// What one tick produced.
#[derive(Debug, Default)]
pub struct Tick {
    /// The RTP time (48 kHz) of this frame; the same for every stream, so a listener may move
    /// between the shared mix and its mix-minus without a jump.
    pub ts: u32,
    /// The shared mix (everyone speaking).
    pub shared: Option<Bytes>,
    /// Mix-minus per speaking listener: (input, packet).
    pub minus: Vec<(String, Bytes)>,
    /// The inputs mixed, loudest first.
    pub speakers: Vec<String>,
    /// Inputs decoded in this tick.
    pub decoded: usize,
    /// The longest a packet mixed in this tick waited in its jitter buffer.
    pub waited: Option<Duration>,
}

struct Input {
    jitter: Jitter,
    decoder: Option<Decoder>,
    /// Smoothed RFC 6464 level.
    level: f32,
    /// Its packets carry levels (so it need not be decoded to be ranked).
    has_levels: bool,
    listens: bool,
    speaking: bool,
}

struct Output {
    encoder: Encoder,
    limiter: Limiter,
}

/// See the module docs.
pub struct Mixer {
    config: MixConfig,
    inputs: BTreeMap<String, Input>,
    shared: Option<Output>,
    minus: HashMap<String, Output>,
    frames: u32,
}

impl Mixer {
    /// A mixer with no inputs.
    pub fn new(config: MixConfig) -> Self {
        let shared = new_output(config.bitrate);
        Self { config, inputs: BTreeMap::new(), shared, minus: HashMap::new(), frames: 0 }
    }

    /// The inputs known.
    pub fn inputs(&self) -> usize {
        self.inputs.len()
    }

    fn input(&mut self, id: &str) -> &mut Input {
        let jitter_frames = self.config.jitter_frames;
        self.inputs.entry(id.to_owned()).or_insert_with(|| Input {
            jitter: Jitter::new(jitter_frames, jitter_frames + 4),
            decoder: None,
            level: 127.0,
            has_levels: false,
            listens: false,
            speaking: false,
        })
    }

    /// A packet of input `id`: its RTP time, Opus payload and RFC 6464 level when it had one.
    pub fn push(&mut self, id: &str, ts: u32, payload: Bytes, level: Option<u8>, now: Instant) {
        self.input(id).jitter.push(ts, payload, level, now);
    }

    /// Whether input `id`'s owner listens to the mix (so it gets a mix-minus while speaking).
    pub fn set_listening(&mut self, id: &str, listens: bool) {
        self.input(id).listens = listens;
    }

    /// Input `id` is gone: it leaves the mix at once.
    pub fn remove(&mut self, id: &str) {
        self.inputs.remove(id);
        self.minus.remove(id);
    }

    /// Ticks mixed so far: the mix's RTP clock, in frames.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Moves the mix's RTP clock on by `frames` ticks that were never mixed (a late task): the
    /// stream keeps real time, and its receivers conceal the gap as a loss.
    pub fn skip(&mut self, frames: u32) {
        self.frames = self.frames.wrapping_add(frames);
    }

    /// Mixes the next 20 ms; call once per 20 ms.
    pub fn tick(&mut self, now: Instant) -> Tick {
        let mut tick = Tick { ts: self.frames.wrapping_mul(FRAME), ..Tick::default() };
        self.frames = self.frames.wrapping_add(1);
        let mut pcm: HashMap<String, [f32; FRAME as usize]> = HashMap::new();
        let mut slots = Vec::with_capacity(self.inputs.len());
        // Play a slot of every input; rank it by its level, decoding it only when it has none.
        for (id, input) in self.inputs.iter_mut() {
            let slot = input.jitter.pop();
            match &slot {
                Slot::Packet { level: Some(l), .. } => {
                    input.has_levels = true;
                    input.level = select::smooth(input.level, *l);
                }
                Slot::Idle => input.level = 127.0,
                _ if !input.has_levels => {
                    let frame = decode(input, &slot);
                    tick.decoded += 1;
                    input.level = select::smooth(input.level, select::level_of(&frame));
                    pcm.insert(id.clone(), frame);
                }
                _ => {}
            }
            slots.push((id.clone(), slot));
        }
        let ranked: Vec<(String, f32, bool)> = slots
            .iter()
            .filter(|(_, s)| !matches!(s, Slot::Idle))
            .map(|(id, _)| (id.clone(), self.inputs[id].level, self.inputs[id].speaking))
            .collect();
        let speakers = select::pick(&ranked, self.config.speakers);
        let mut sum = [0f32; FRAME as usize];
        for (id, slot) in &slots {
            let speaking = speakers.contains(id);
            if !speaking {
                continue;
            }
            if let Slot::Packet { arrived, .. } = slot {
                let waited = now.saturating_duration_since(*arrived);
                tick.waited = Some(tick.waited.map_or(waited, |w| w.max(waited)));
            }
            if !pcm.contains_key(id) {
                let Some(input) = self.inputs.get_mut(id) else { continue };
                let frame = decode(input, slot);
                tick.decoded += 1;
                pcm.insert(id.clone(), frame);
            }
            for (s, x) in sum.iter_mut().zip(pcm[id].iter()) {
                *s += x;
            }
        }
        for (id, input) in self.inputs.iter_mut() {
            input.speaking = speakers.contains(id);
        }
        let mut out = [0i16; FRAME as usize];
        if let Some(shared) = self.shared.as_mut() {
            shared.limiter.process(&sum, &mut out);
            tick.shared = shared.encoder.encode(&out);
        }
        // Mix-minus for speakers who listen; encoders of those who stopped speaking go.
        let bitrate = self.config.bitrate;
        let listening: Vec<String> =
            speakers.iter().filter(|id| self.inputs.get(*id).is_some_and(|i| i.listens)).cloned().collect();
        self.minus.retain(|id, _| listening.contains(id));
        for id in listening {
            let mut minus = sum;
            for (m, x) in minus.iter_mut().zip(pcm[&id].iter()) {
                *m -= x;
            }
            let output = match self.minus.entry(id.clone()) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => match new_output(bitrate) {
                    Some(o) => v.insert(o),
                    None => continue,
                },
            };
            output.limiter.process(&minus, &mut out);
            if let Some(packet) = output.encoder.encode(&out) {
                tick.minus.push((id, packet));
            }
        }
        tick.speakers = speakers;
        tick
    }
}

fn new_output(bitrate: i32) -> Option<Output> {
    Some(Output { encoder: Encoder::new(bitrate)?, limiter: Limiter::default() })
}

/// Decodes what `slot` plays: a packet, FEC from the next one, or concealment.
fn decode(input: &mut Input, slot: &Slot) -> [f32; FRAME as usize] {
    let mut frame = [0f32; FRAME as usize];
    if input.decoder.is_none() {
        input.decoder = Decoder::new();
    }
    let Some(decoder) = input.decoder.as_mut() else {
        return frame;
    };
    match slot {
        Slot::Packet { payload, .. } => decoder.decode(Some(payload), false, &mut frame),
        Slot::Lost { next: Some(next) } => decoder.decode(Some(next), true, &mut frame),
        Slot::Lost { next: None } => decoder.decode(None, false, &mut frame),
        Slot::Idle => false,
    };
    frame
}
