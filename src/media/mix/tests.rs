//! The mixer end to end on real Opus: sine tones in, spectra of the decoded output checked.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::codec::{Decoder, Encoder};
use super::*;

const AMP: f32 = 8000.0;

/// A tone's amplitude in `pcm` (Goertzel at `freq`; exact for whole periods in the window).
fn amplitude(pcm: &[f32], freq: f32) -> f32 {
    let w = 2.0 * std::f32::consts::PI * freq / 48_000.0;
    let (mut re, mut im) = (0.0f32, 0.0f32);
    for (k, x) in pcm.iter().enumerate() {
        re += x * (w * k as f32).cos();
        im -= x * (w * k as f32).sin();
    }
    2.0 * (re * re + im * im).sqrt() / pcm.len() as f32
}

/// A sender of a sine tone: Opus packets, 20 ms each.
struct Tone {
    freq: f32,
    amp: f32,
    encoder: Encoder,
    n: u32,
}

impl Tone {
    fn new(freq: f32) -> Self {
        Self { freq, amp: AMP, encoder: Encoder::new(48_000).unwrap(), n: 0 }
    }

    fn next(&mut self) -> (u32, Bytes) {
        let start = self.n * FRAME;
        let pcm: [i16; FRAME as usize] = std::array::from_fn(|k| {
            let t = (start + k as u32) as f32 / 48_000.0;
            (self.amp * (2.0 * std::f32::consts::PI * self.freq * t).sin()) as i16
        });
        self.n += 1;
        (start, self.encoder.encode(&pcm).unwrap())
    }
}

/// A listener: decodes what it is sent.
struct Ear {
    decoder: Decoder,
    pcm: Vec<f32>,
}

impl Ear {
    fn new() -> Self {
        Self { decoder: Decoder::new().unwrap(), pcm: Vec::new() }
    }

    fn hear(&mut self, packet: &Bytes) {
        let mut frame = [0f32; FRAME as usize];
        self.decoder.decode(Some(packet), false, &mut frame);
        self.pcm.extend_from_slice(&frame);
    }

    /// The amplitude of `freq` over the last 100 ms.
    fn tone(&self, freq: f32) -> f32 {
        amplitude(&self.pcm[self.pcm.len() - 4800..], freq)
    }
}

struct Room {
    mixer: Mixer,
    tones: Vec<(String, Tone, Option<u8>)>,
    now: Instant,
    shared: Ear,
    minus: Vec<(String, Ear)>,
}

impl Room {
    fn new(config: MixConfig, freqs: &[f32]) -> Self {
        let mut mixer = Mixer::new(config);
        let tones: Vec<_> = freqs.iter().map(|f| (format!("t{f}"), Tone::new(*f), None)).collect();
        let mut minus = Vec::new();
        for (id, _, _) in &tones {
            mixer.set_listening(id, true);
            minus.push((id.clone(), Ear::new()));
        }
        Self { mixer, tones, now: Instant::now(), shared: Ear::new(), minus }
    }

    /// 20 ms: every tone sends a packet (unless `drop` says so), the mixer ticks, ears listen.
    fn step(&mut self, drop: impl Fn(&str, u32) -> bool) -> Tick {
        for (id, tone, level) in &mut self.tones {
            let (ts, packet) = tone.next();
            if !drop(id, tone.n) {
                self.mixer.push(id, ts, packet, *level, self.now);
            }
        }
        let tick = self.mixer.tick(self.now);
        self.now += TICK;
        self.shared.hear(tick.shared.as_ref().unwrap());
        for (id, ear) in &mut self.minus {
            // A listener hears its mix-minus while it speaks, the shared mix otherwise.
            let own = tick.minus.iter().find(|(m, _)| m == id).map(|(_, p)| p);
            ear.hear(own.unwrap_or(tick.shared.as_ref().unwrap()));
        }
        tick
    }

    fn run(&mut self, ticks: usize) -> Tick {
        let mut last = Tick::default();
        for _ in 0..ticks {
            last = self.step(|_, _| false);
        }
        last
    }

    fn ear(&self, id: &str) -> &Ear {
        &self.minus.iter().find(|(m, _)| m == id).unwrap().1
    }
}

#[test]
fn the_shared_mix_holds_every_tone_and_each_mix_minus_all_but_its_own() {
    let mut room = Room::new(MixConfig::default(), &[440.0, 660.0, 880.0]);
    let tick = room.run(30);
    assert_eq!(tick.speakers.len(), 3);
    assert_eq!(tick.minus.len(), 3, "one mix-minus per speaking listener");
    for f in [440.0, 660.0, 880.0] {
        let a = room.shared.tone(f);
        assert!(a > 0.5 * AMP, "{f} Hz in the shared mix: {a}");
    }
    for (own, others) in [("t440", [660.0, 880.0]), ("t660", [440.0, 880.0]), ("t880", [440.0, 660.0])] {
        let ear = room.ear(own);
        let own_f: f32 = own[1..].parse().unwrap();
        assert!(ear.tone(own_f) < 0.03 * AMP, "{own} hears itself: {}", ear.tone(own_f));
        for f in others {
            assert!(ear.tone(f) > 0.5 * AMP, "{own} misses {f} Hz: {}", ear.tone(f));
        }
    }
    let waited = tick.waited.unwrap();
    assert!(waited <= Duration::from_millis(60), "jitter delay {waited:?}");
}

#[test]
fn only_the_loudest_are_mixed_and_silent_inputs_with_levels_are_not_decoded() {
    let config = MixConfig { speakers: 2, ..MixConfig::default() };
    let mut room = Room::new(config, &[440.0, 660.0, 880.0, 1000.0, 1200.0]);
    // Levels as a browser puts them on its packets: 1000 and 1200 Hz are near silent.
    for (id, tone, level) in &mut room.tones {
        *level = Some(match id.as_str() {
            "t440" => 30,
            "t660" => 20,
            "t880" => 10,
            _ => 120,
        });
        if *level == Some(120) {
            tone.amp = 10.0;
        }
    }
    let tick = room.run(30);
    assert_eq!(tick.speakers, vec!["t880".to_owned(), "t660".to_owned()]);
    assert_eq!(tick.decoded, 2, "only the two speakers are decoded");
    assert!(room.shared.tone(440.0) < 0.03 * AMP, "the third loudest is left out");
    assert!(room.shared.tone(880.0) > 0.5 * AMP);
    // Without levels, every input is decoded to be ranked, and the ranking is the same.
    let mut room = Room::new(MixConfig { speakers: 2, ..MixConfig::default() }, &[440.0, 660.0, 1000.0]);
    room.tones[2].1.amp = 10.0;
    let tick = room.run(30);
    assert_eq!(tick.decoded, 3);
    assert_eq!(tick.speakers.len(), 2);
    assert!(!tick.speakers.contains(&"t1000".to_owned()));
}

#[test]
fn the_limiter_keeps_loud_voices_from_clipping() {
    let mut room = Room::new(MixConfig::default(), &[440.0, 660.0, 880.0]);
    for (_, tone, _) in &mut room.tones {
        tone.amp = 30000.0;
    }
    room.run(50);
    let peak = room.shared.pcm.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert!(peak < 32000.0, "three full-scale voices clip: {peak}");
    assert!(room.shared.tone(660.0) > 3000.0, "still audible");
}

#[test]
fn lost_packets_are_concealed() {
    let mut room = Room::new(MixConfig::default(), &[440.0]);
    room.run(10);
    // One packet in five is lost; every 20 ms of the output still carries the tone.
    for _ in 0..50 {
        room.step(|_, n| n % 5 == 0);
    }
    let tail = &room.shared.pcm[room.shared.pcm.len() - 50 * FRAME as usize..];
    for (k, frame) in tail.chunks(FRAME as usize).enumerate() {
        let rms = (frame.iter().map(|x| x * x).sum::<f32>() / frame.len() as f32).sqrt();
        assert!(rms > 0.3 * AMP / 2f32.sqrt(), "frame {k} went quiet: rms {rms}");
    }
}

#[test]
fn a_removed_input_leaves_the_mix_at_once() {
    let mut room = Room::new(MixConfig::default(), &[440.0, 660.0]);
    room.run(30);
    assert!(room.shared.tone(660.0) > 0.5 * AMP);
    room.mixer.remove("t660");
    room.tones.retain(|(id, _, _)| id != "t660");
    room.run(6);
    assert!(room.shared.tone(660.0) < 0.03 * AMP, "{}", room.shared.tone(660.0));
    assert!(room.shared.tone(440.0) > 0.5 * AMP);
    assert_eq!(room.mixer.inputs(), 1);
}

#[test]
fn skipped_ticks_move_the_mix_clock_on_and_the_silence_packet_decodes_to_silence() {
    let mut mixer = Mixer::new(MixConfig::default());
    let now = Instant::now();
    assert_eq!(mixer.tick(now).ts, 0);
    mixer.skip(3);
    assert_eq!(mixer.tick(now).ts, 4 * FRAME, "three ticks were never mixed: their time passed");
    // The packet a room-mix recording fills such gaps with is 20 ms of Opus silence.
    let mut decoder = Decoder::new().unwrap();
    let mut pcm = [1f32; FRAME as usize];
    assert!(decoder.decode(Some(&[0xf8, 0xff, 0xfe]), false, &mut pcm));
    assert!(pcm.iter().all(|s| s.abs() < 1.0), "silence");
}
