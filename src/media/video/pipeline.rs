//! A filter pipeline on one track, sans-IO: VP8 frames of the source in, the filtered track out,
//! frame for frame (the source's rate and RTP time, so it stays in sync with the source's audio).
//! Sources larger than the configured cap are scaled down to fit it before filtering.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::composition::{Input, Output, Stats};
use super::decode::TrackDecoder;
use super::filter::{Chain, FrameContext};
use super::geom::Rect;
use super::scale::{Fit, draw_scaled};
use super::{Encoder, EncoderConfig, I420};

/// A pipeline's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Output bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// The largest output width; larger sources are scaled down.
    pub max_width: u32,
    /// The largest output height.
    pub max_height: u32,
}

/// A running pipeline.
pub struct Pipeline {
    config: PipelineConfig,
    track: String,
    decoder: TrackDecoder,
    chain: Chain,
    encoder: Option<Encoder>,
    force_keyframe: bool,
    out: VecDeque<Output>,
    stats: Stats,
}

/// The size a `width`×`height` source is processed at: within the cap, aspect kept, even.
pub fn fit_within(width: u32, height: u32, max_w: u32, max_h: u32) -> (u32, u32) {
    let scale = (max_w as f32 / width as f32).min(max_h as f32 / height as f32).min(1.0);
    let w = ((width as f32 * scale) as u32 & !1).max(2);
    let h = ((height as f32 * scale) as u32 & !1).max(2);
    (w, h)
}

impl Pipeline {
    /// A pipeline on `track` through `chain`.
    pub fn new(config: PipelineConfig, track: &str, chain: Chain) -> Self {
        Self {
            config,
            track: track.to_owned(),
            decoder: TrackDecoder::new(),
            chain,
            encoder: None,
            force_keyframe: false,
            out: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Takes one input: frames of its track, keyframe requests; others are ignored.
    pub fn handle(&mut self, input: Input, now: Instant, wall_secs: u64) {
        match input {
            Input::Keyframe => self.force_keyframe = true,
            Input::Frame { track, payload, keyframe, contiguous, time } if track == self.track => {
                let pushed = self.decoder.push(&payload, keyframe, contiguous, now);
                if pushed.error {
                    self.stats.decode_errors += 1;
                }
                if pushed.want_keyframe {
                    self.out.push_back(Output::RequestKeyframe { track });
                }
                if let Some(frame) = pushed.frame {
                    self.process(frame, time, now, wall_secs);
                }
            }
            _ => {}
        }
    }

    fn process(&mut self, frame: I420, time: u64, now: Instant, wall_secs: u64) {
        let (w, h) = fit_within(frame.width, frame.height, self.config.max_width, self.config.max_height);
        let mut frame = if (w, h) == (frame.width, frame.height) {
            frame
        } else {
            let Ok(mut small) = I420::filled(w, h, [0, 0, 0]) else { return };
            draw_scaled(&frame, &mut small, Rect::new(0, 0, w, h), Fit::Cover);
            small
        };
        let events = self.chain.apply(&mut frame, FrameContext { now, wall_secs });
        if !events.is_empty() {
            self.out.push_back(Output::Events(events));
        }
        if self.encoder.is_none() {
            let config = EncoderConfig {
                width: frame.width,
                height: frame.height,
                fps: 30,
                bitrate_kbps: self.config.bitrate_kbps,
                keyframe_interval: 300,
            };
            match Encoder::new(config) {
                Ok(e) => self.encoder = Some(e),
                Err(e) => {
                    tracing::warn!(error = %e, "pipeline: no encoder");
                    return;
                }
            }
        }
        let Some(encoder) = self.encoder.as_mut() else { return };
        let keyframe = std::mem::take(&mut self.force_keyframe);
        match encoder.encode(&frame, keyframe) {
            Ok(packets) => {
                for p in packets {
                    self.stats.composed += 1;
                    let data = Bytes::from(p.data);
                    self.out.push_back(Output::Frame { data, keyframe: p.keyframe, time });
                }
            }
            Err(e) => tracing::warn!(error = %e, "pipeline: encode failed"),
        }
    }

    /// The next output.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::media::video::filter::{FilterEvent, parse};
    use crate::media::video::{Decoder, I420};

    #[test]
    fn fit_within_keeps_the_aspect_and_never_grows() {
        assert_eq!(fit_within(1280, 720, 640, 480), (640, 360));
        assert_eq!(fit_within(320, 240, 640, 480), (320, 240));
        assert_eq!(fit_within(720, 1280, 640, 640), (360, 640));
    }

    #[test]
    fn a_pixelate_pipeline_filters_frame_for_frame_keeps_rtp_time_and_follows_a_size_change() {
        let chain = Chain::build(
            &parse(&json!([{"type": "pixelate", "block": 32}, {"type": "faces", "rate": 1}])).unwrap(),
            None,
        )
        .unwrap();
        let config = PipelineConfig { bitrate_kbps: 500, max_width: 640, max_height: 360 };
        let mut p = Pipeline::new(config, "cam", chain);
        // A source with detail: a checkerboard of 4-pixel squares.
        let mut src = I420::filled(320, 240, [0, 0, 0]).unwrap();
        for y in 0..240 {
            for x in 0..320 {
                if (x / 4 + y / 4) % 2 == 0 {
                    src.set_rgb(x, y, [255, 255, 255]);
                }
            }
        }
        let mut enc = Encoder::new(EncoderConfig {
            width: 320,
            height: 240,
            fps: 30,
            bitrate_kbps: 2000,
            keyframe_interval: 100,
        })
        .unwrap();
        let mut dec = Decoder::new().unwrap();
        let t0 = Instant::now();
        let mut decoded = None;
        let mut events = 0;
        for i in 0..5u64 {
            let e = enc.encode(&src, false).unwrap().remove(0);
            let input = Input::Frame {
                track: "cam".into(),
                payload: Bytes::from(e.data),
                keyframe: e.keyframe,
                contiguous: true,
                time: 1000 + i * 3000,
            };
            p.handle(input, t0 + Duration::from_millis(33 * i), 0);
            while let Some(o) = p.poll_output() {
                match o {
                    Output::Frame { data, time, .. } => {
                        assert_eq!(time, 1000 + i * 3000, "the source's RTP time");
                        decoded = dec.decode(&data).unwrap();
                    }
                    Output::Events(ev) => {
                        assert!(matches!(&ev[..], [FilterEvent::Faces { faces, .. }] if faces.is_empty()));
                        events += 1;
                    }
                    o => panic!("{o:?}"),
                }
            }
        }
        assert_eq!(events, 1, "one detection in the first second");
        let out = decoded.unwrap();
        // The checkerboard is gone: 32-pixel blocks of its mean grey.
        let centre = out.rgb_at(16, 16).unwrap();
        assert!(centre[0].abs_diff(128) < 30, "{centre:?}");
        // A 1280×720 source is scaled to the cap.
        let mut enc = Encoder::new(EncoderConfig {
            width: 1280,
            height: 720,
            fps: 30,
            bitrate_kbps: 2000,
            keyframe_interval: 100,
        })
        .unwrap();
        let e = enc.encode(&I420::filled(1280, 720, [0, 0, 200]).unwrap(), true).unwrap().remove(0);
        p.handle(
            Input::Frame {
                track: "cam".into(),
                payload: Bytes::from(e.data),
                keyframe: true,
                contiguous: true,
                time: 0,
            },
            t0,
            0,
        );
        let Some(Output::Frame { data, keyframe, .. }) = p.poll_output() else { panic!() };
        assert!(keyframe, "a new size starts with a keyframe");
        let out = dec.decode(&data).unwrap().unwrap();
        assert_eq!((out.width, out.height), (640, 360));
        assert_eq!(p.stats().composed, 6);
    }
}
