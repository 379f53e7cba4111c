//! One recording file: a track's VP8 or Opus in WebM, Opus in Ogg, or H.264 in Matroska, or a
//! composed recording's VP8 and Opus together in one WebM. Runs on its recording's thread, never
//! on the engine's.
//!
//! libwebm writes each cluster as it goes (its size fixed by a seek once it closes) and only the
//! cues and the duration at the end: a file cut by a crash lacks those and plays up to its last
//! flushed bytes; a finished one seeks in a browser and shows its duration.

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;
use std::rc::Rc;

use webm::mux::{AudioCodecId, SegmentBuilder, SegmentMode, VideoCodecId, Writer};

use super::avc;
use super::mkv::MkvWriter;
use crate::media::ogg::OggOpusWriter;

/// The file under a muxer, shared so the recording can flush it and learn of write errors
/// (libwebm only says a write failed, not why).
#[derive(Clone)]
pub(super) struct Shared(Rc<RefCell<Inner>>);

struct Inner {
    file: BufWriter<File>,
    written: u64,
    error: Option<std::io::Error>,
}

impl Shared {
    fn create(path: &Path) -> std::io::Result<Self> {
        let file = BufWriter::with_capacity(64 << 10, File::create(path)?);
        Ok(Self(Rc::new(RefCell::new(Inner { file, written: 0, error: None }))))
    }

    /// Bytes handed to the file so far.
    pub(super) fn written(&self) -> u64 {
        self.0.borrow().written
    }

    /// Pushes buffered bytes to the OS (the crash-safety point).
    pub(super) fn flush(&self) -> std::io::Result<()> {
        let mut inner = self.0.borrow_mut();
        let r = inner.file.flush();
        if let Err(e) = &r {
            inner.error.get_or_insert(std::io::Error::new(e.kind(), e.to_string()));
        }
        r
    }

    /// The first write error, if any.
    pub(super) fn error(&self) -> Option<String> {
        self.0.borrow().error.as_ref().map(|e| e.to_string())
    }
}

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut inner = self.0.borrow_mut();
        match inner.file.write(buf) {
            Ok(n) => {
                inner.written += n as u64;
                Ok(n)
            }
            Err(e) => {
                inner.error.get_or_insert(std::io::Error::new(e.kind(), e.to_string()));
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.borrow_mut().file.flush()
    }
}

impl Seek for Shared {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.0.borrow_mut().file.seek(pos)
    }
}

/// The container a track is written in.
pub(super) enum Muxer {
    /// Per track: its number and its last frame's timestamp (`None` before the first).
    Webm {
        segment: webm::mux::Segment<Shared>,
        tracks: Vec<(u64, Option<u64>)>,
    },
    Ogg(OggOpusWriter<Shared>),
    /// H.264 (our own writer: libwebm's FFI has no H.264 codec id).
    Mkv(MkvWriter),
}

/// A track's open file.
pub(super) struct TrackFile {
    pub(super) shared: Shared,
    muxer: Muxer,
}

fn webm_error(e: webm::mux::Error, shared: &Shared) -> String {
    shared.error().unwrap_or_else(|| format!("libwebm: {e:?}"))
}

impl TrackFile {
    /// A WebM file of one VP8 track of `width`×`height`.
    pub(super) fn vp8(path: &Path, width: u32, height: u32) -> Result<Self, String> {
        let shared = Shared::create(path).map_err(|e| e.to_string())?;
        let builder = SegmentBuilder::new(Writer::new(shared.clone()))
            .and_then(|b| b.set_mode(SegmentMode::File))
            .and_then(|b| b.set_writing_app("switchboard"))
            .and_then(|b| b.add_video_track(width.max(1), height.max(1), VideoCodecId::VP8, None))
            .map_err(|e| webm_error(e, &shared))?;
        let (builder, track) = builder;
        let segment = builder.build();
        Ok(Self { shared, muxer: Muxer::Webm { segment, tracks: vec![(track.into(), None)] } })
    }

    /// A WebM file of a VP8 track of `width`×`height` (written with `track` 0) and an Opus
    /// track (`track` 1): a composed recording.
    pub(super) fn vp8_opus(path: &Path, width: u32, height: u32) -> Result<Self, String> {
        let shared = Shared::create(path).map_err(|e| e.to_string())?;
        let (builder, video) = SegmentBuilder::new(Writer::new(shared.clone()))
            .and_then(|b| b.set_mode(SegmentMode::File))
            .and_then(|b| b.set_writing_app("switchboard"))
            .and_then(|b| b.add_video_track(width.max(1), height.max(1), VideoCodecId::VP8, None))
            .map_err(|e| webm_error(e, &shared))?;
        let (builder, audio) = builder
            .add_audio_track(48_000, 2, AudioCodecId::Opus, None)
            .map_err(|e| webm_error(e, &shared))?;
        let builder = builder.set_codec_private(audio, &opus_head()).map_err(|e| webm_error(e, &shared))?;
        let segment = builder.build();
        let tracks = vec![(video.into(), None), (audio.into(), None)];
        Ok(Self { shared, muxer: Muxer::Webm { segment, tracks } })
    }

    /// A WebM file of one Opus track (48 kHz, as WebRTC declares it: 2 channels).
    pub(super) fn opus_webm(path: &Path) -> Result<Self, String> {
        let shared = Shared::create(path).map_err(|e| e.to_string())?;
        let (builder, track) = SegmentBuilder::new(Writer::new(shared.clone()))
            .and_then(|b| b.set_mode(SegmentMode::File))
            .and_then(|b| b.set_writing_app("switchboard"))
            .and_then(|b| b.add_audio_track(48_000, 2, AudioCodecId::Opus, None))
            .map_err(|e| webm_error(e, &shared))?;
        let builder = builder.set_codec_private(track, &opus_head()).map_err(|e| webm_error(e, &shared))?;
        let segment = builder.build();
        Ok(Self { shared, muxer: Muxer::Webm { segment, tracks: vec![(track.into(), None)] } })
    }

    /// A Matroska file of one H.264 track, from a keyframe (Annex B) that carries its SPS and
    /// PPS; `None` when it lacks them (or an SPS that says the picture size).
    pub(super) fn h264(path: &Path, keyframe: &[u8]) -> Result<Option<Self>, String> {
        let size = crate::rtc::engine::frame_size::keyframe_size(str0m::format::Codec::H264, keyframe);
        let (Some((w, h)), Some(avcc)) = (size, avc::avcc_record(keyframe)) else { return Ok(None) };
        let mut shared = Shared::create(path).map_err(|e| e.to_string())?;
        let (writer, head) = MkvWriter::new(w.into(), h.into(), &avcc);
        shared.write_all(&head).map_err(|e| e.to_string())?;
        Ok(Some(Self { shared, muxer: Muxer::Mkv(writer) }))
    }

    /// An Ogg/Opus file.
    pub(super) fn opus_ogg(path: &Path) -> Result<Self, String> {
        let shared = Shared::create(path).map_err(|e| e.to_string())?;
        let ogg = OggOpusWriter::new(shared.clone(), 2).map_err(|e| e.to_string())?;
        Ok(Self { shared, muxer: Muxer::Ogg(ogg) })
    }

    /// Writes a frame at `ns` nanoseconds after the file's start (never before the last).
    pub(super) fn write(&mut self, data: &[u8], ns: u64, keyframe: bool) -> Result<(), String> {
        self.write_track(0, data, ns, keyframe)
    }

    /// Writes a frame of the file's `index`th track (the order it was made with).
    pub(super) fn write_track(
        &mut self,
        index: usize,
        data: &[u8],
        ns: u64,
        keyframe: bool,
    ) -> Result<(), String> {
        match &mut self.muxer {
            Muxer::Webm { segment, tracks } => {
                let Some((track, last_ns)) = tracks.get_mut(index) else {
                    return Err(format!("no track {index} in this file"));
                };
                // Strictly increasing at WebM's 1 ms resolution: a sender may encode a picture
                // again with its RTP time (a keyframe asked for), and players drop equal ones.
                let ns = last_ns.map_or(ns, |last| ns.max(last + 1_000_000));
                *last_ns = Some(ns);
                segment.add_frame(*track, data, ns, keyframe).map_err(|e| webm_error(e, &self.shared))
            }
            Muxer::Ogg(ogg) => ogg.write(data, ns * 48 / 1_000_000).map_err(|e| e.to_string()),
            Muxer::Mkv(mkv) => {
                let bytes = mkv.frame(&avc::to_avcc(data), ns / 1_000_000, keyframe);
                self.shared.write_all(&bytes).map_err(|e| self.shared.error().unwrap_or(e.to_string()))
            }
        }
    }

    /// Closes the file (WebM: the last cluster and the cues; Ogg: the last page).
    pub(super) fn finish(self) -> Result<(), String> {
        let shared = self.shared.clone();
        match self.muxer {
            Muxer::Webm { segment, .. } => {
                segment
                    .finalize(None)
                    .map_err(|_| shared.error().unwrap_or_else(|| "libwebm: finalize".into()))?;
            }
            Muxer::Ogg(ogg) => {
                ogg.finish().map_err(|e| e.to_string())?;
            }
            Muxer::Mkv(mkv) => {
                // The one patch: the Duration over its Void (a cut file simply has none).
                if let Some((at, bytes)) = mkv.duration() {
                    let mut file = shared.clone();
                    file.seek(SeekFrom::Start(at)).map_err(|e| e.to_string())?;
                    file.write_all(&bytes).map_err(|e| e.to_string())?;
                    file.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
                }
            }
        }
        shared.flush().map_err(|e| e.to_string())
    }
}

/// The OpusHead of WebM's CodecPrivate (RFC 7845 §5.1): 2 channels, 48 kHz, no pre-skip.
fn opus_head() -> Vec<u8> {
    let mut head = b"OpusHead".to_vec();
    head.extend_from_slice(&[1, 2, 0, 0]);
    head.extend_from_slice(&48_000u32.to_le_bytes());
    head.extend_from_slice(&[0, 0, 0]);
    head
}

/// The size of a VP8 keyframe (RFC 6386 §9.1); `None` for an interframe or garbage.
pub(super) fn vp8_keyframe_size(frame: &[u8]) -> Option<(u32, u32)> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let h = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    (w > 0 && h > 0).then_some((w as u32, h as u32))
}
