//! A small sans-IO Matroska writer for one H.264 track (libwebm's FFI has no H.264 codec id):
//! it returns the bytes to append, the caller writes them.
//!
//! Written live, so that a file cut anywhere plays up to its last complete block: the Segment and
//! every Cluster have the EBML "unknown" size, nothing is ever patched but the Duration, whose
//! place is a Void in Info until [`MkvWriter::duration`] fills it at the end. A new Cluster starts
//! at each keyframe and at least every second.

/// EBML element ids (Matroska spec, RFC 9559), as written (the marker bits included).
mod id {
    pub const EBML: u32 = 0x1A45_DFA3;
    pub const EBML_VERSION: u32 = 0x4286;
    pub const EBML_READ_VERSION: u32 = 0x42F7;
    pub const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
    pub const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
    pub const DOC_TYPE: u32 = 0x4282;
    pub const DOC_TYPE_VERSION: u32 = 0x4287;
    pub const DOC_TYPE_READ_VERSION: u32 = 0x4285;
    pub const SEGMENT: u32 = 0x1853_8067;
    pub const INFO: u32 = 0x1549_A966;
    pub const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
    pub const MUXING_APP: u32 = 0x4D80;
    pub const WRITING_APP: u32 = 0x5741;
    pub const DURATION: u32 = 0x4489;
    pub const VOID: u32 = 0xEC;
    pub const TRACKS: u32 = 0x1654_AE6B;
    pub const TRACK_ENTRY: u32 = 0xAE;
    pub const TRACK_NUMBER: u32 = 0xD7;
    pub const TRACK_UID: u32 = 0x73C5;
    pub const TRACK_TYPE: u32 = 0x83;
    pub const FLAG_LACING: u32 = 0x9C;
    pub const CODEC_ID: u32 = 0x86;
    pub const CODEC_PRIVATE: u32 = 0x63A2;
    pub const VIDEO: u32 = 0xE0;
    pub const PIXEL_WIDTH: u32 = 0xB0;
    pub const PIXEL_HEIGHT: u32 = 0xBA;
    pub const CLUSTER: u32 = 0x1F43_B675;
    pub const TIMESTAMP: u32 = 0xE7;
    pub const SIMPLE_BLOCK: u32 = 0xA3;
}

/// The 8-byte size that says "unknown" (all value bits set): live Segment and Clusters.
const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
/// A Cluster holds blocks at most this long after its start (block times are 16-bit).
const CLUSTER_MS: u64 = 1000;
/// Bytes of a Duration element (2-byte id, 1-byte size, 8-byte float), reserved by a Void.
const DURATION_LEN: usize = 11;

/// An element id: its bytes as written.
fn put_id(out: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().position(|&b| b != 0).unwrap_or(3);
    out.extend_from_slice(&bytes[skip..]);
}

/// An element's data size as the shortest EBML variable-length integer (the all-ones value of
/// each length is reserved for "unknown").
fn put_size(out: &mut Vec<u8>, size: u64) {
    let len = (1..=8).find(|&n| size < (1u64 << (7 * n)) - 1).expect("sizes fit 56 bits");
    let marked = size | (1u64 << (7 * len));
    out.extend_from_slice(&marked.to_be_bytes()[8 - len..]);
}

fn put_bytes(out: &mut Vec<u8>, id: u32, data: &[u8]) {
    put_id(out, id);
    put_size(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// An unsigned integer element in as few bytes as it needs (at least one).
fn put_uint(out: &mut Vec<u8>, id: u32, value: u64) {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().position(|&b| b != 0).unwrap_or(7);
    put_bytes(out, id, &bytes[skip..]);
}

/// A master element around what `body` writes.
fn put_master(out: &mut Vec<u8>, id: u32, body: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    body(&mut inner);
    put_bytes(out, id, &inner);
}

/// See the module docs.
pub(super) struct MkvWriter {
    /// The current Cluster's timestamp (ms), `None` before the first block.
    cluster: Option<u64>,
    /// The last block's timestamp (ms): blocks never go back, nor repeat one.
    last: Option<u64>,
    /// The time between the last two blocks: the last frame's length, for the Duration.
    step: u64,
    /// Where the Void that the Duration replaces starts, from the file's start.
    duration_at: u64,
}

impl MkvWriter {
    /// The writer and the file's head: EBML header, Segment, Info and Tracks with one
    /// `V_MPEG4/ISO/AVC` track of `width`×`height` whose CodecPrivate is the `avcC` record.
    pub(super) fn new(width: u32, height: u32, avcc: &[u8]) -> (Self, Vec<u8>) {
        let mut out = Vec::with_capacity(256 + avcc.len());
        put_master(&mut out, id::EBML, |o| {
            put_uint(o, id::EBML_VERSION, 1);
            put_uint(o, id::EBML_READ_VERSION, 1);
            put_uint(o, id::EBML_MAX_ID_LENGTH, 4);
            put_uint(o, id::EBML_MAX_SIZE_LENGTH, 8);
            put_bytes(o, id::DOC_TYPE, b"matroska");
            put_uint(o, id::DOC_TYPE_VERSION, 4);
            put_uint(o, id::DOC_TYPE_READ_VERSION, 2);
        });
        put_id(&mut out, id::SEGMENT);
        out.extend_from_slice(&UNKNOWN_SIZE);
        let mut info = Vec::new();
        put_uint(&mut info, id::TIMESTAMP_SCALE, 1_000_000);
        put_bytes(&mut info, id::MUXING_APP, b"switchboard");
        put_bytes(&mut info, id::WRITING_APP, b"switchboard");
        let void_in_info = info.len();
        put_bytes(&mut info, id::VOID, &[0; DURATION_LEN - 2]);
        put_bytes(&mut out, id::INFO, &info);
        let duration_at = out.len() - info.len() + void_in_info;
        put_master(&mut out, id::TRACKS, |o| {
            put_master(o, id::TRACK_ENTRY, |t| {
                put_uint(t, id::TRACK_NUMBER, 1);
                put_uint(t, id::TRACK_UID, 1);
                put_uint(t, id::TRACK_TYPE, 1); // video
                put_uint(t, id::FLAG_LACING, 0);
                put_bytes(t, id::CODEC_ID, b"V_MPEG4/ISO/AVC");
                put_bytes(t, id::CODEC_PRIVATE, avcc);
                put_master(t, id::VIDEO, |v| {
                    put_uint(v, id::PIXEL_WIDTH, width.max(1).into());
                    put_uint(v, id::PIXEL_HEIGHT, height.max(1).into());
                });
            });
        });
        let writer = Self { cluster: None, last: None, step: 0, duration_at: duration_at as u64 };
        (writer, out)
    }

    /// The bytes of a frame (AVCC) at `ms` on the file's clock: a SimpleBlock, after a new
    /// Cluster when it is a keyframe or the current one is full. Times are made to increase.
    pub(super) fn frame(&mut self, data: &[u8], ms: u64, keyframe: bool) -> Vec<u8> {
        let ms = self.last.map_or(ms, |last| ms.max(last + 1));
        self.step = self.last.map_or(0, |last| ms - last);
        self.last = Some(ms);
        let mut out = Vec::with_capacity(data.len() + 32);
        let full = self.cluster.is_none_or(|c| keyframe || ms - c >= CLUSTER_MS);
        if full {
            put_id(&mut out, id::CLUSTER);
            out.extend_from_slice(&UNKNOWN_SIZE);
            put_uint(&mut out, id::TIMESTAMP, ms);
            self.cluster = Some(ms);
        }
        let relative = (ms - self.cluster.unwrap_or(ms)) as i16;
        put_id(&mut out, id::SIMPLE_BLOCK);
        put_size(&mut out, 4 + data.len() as u64);
        out.push(0x81); // track 1
        out.extend_from_slice(&relative.to_be_bytes());
        out.push(if keyframe { 0x80 } else { 0 });
        out.extend_from_slice(data);
        out
    }

    /// Where to write the Duration at the end (over the Void), and its bytes: the last block's
    /// time plus its length (as long as the one before); `None` before any block.
    pub(super) fn duration(&self) -> Option<(u64, Vec<u8>)> {
        let end = self.last? + self.step;
        let mut out = Vec::with_capacity(DURATION_LEN);
        put_bytes(&mut out, id::DURATION, &(end as f64).to_be_bytes());
        debug_assert_eq!(out.len(), DURATION_LEN);
        Some((self.duration_at, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put_size(&mut out, v);
        out
    }

    #[test]
    fn sizes_are_shortest_vints_and_avoid_the_unknown_value() {
        assert_eq!(size(0), [0x80]);
        assert_eq!(size(126), [0xfe]);
        assert_eq!(size(127), [0x40, 0x7f], "0xff would mean unknown");
        assert_eq!(size(300), [0x41, 0x2c]);
        assert_eq!(size(16_382), [0x7f, 0xfe]);
        assert_eq!(size(16_383), [0x20, 0x3f, 0xff]);
        assert_eq!(size((1 << 56) - 2).len(), 8);
    }

    #[test]
    fn ids_and_integers_take_the_bytes_they_need() {
        let mut out = Vec::new();
        put_uint(&mut out, id::TRACK_NUMBER, 1);
        put_uint(&mut out, id::TIMESTAMP_SCALE, 1_000_000);
        put_uint(&mut out, id::TIMESTAMP, 0);
        let want = [0xD7, 0x81, 1, 0x2A, 0xD7, 0xB1, 0x83, 0x0F, 0x42, 0x40, 0xE7, 0x81, 0];
        assert_eq!(out, want);
    }

    #[test]
    fn the_head_is_ebml_then_an_unknown_size_segment_with_the_track() {
        let (w, head) = MkvWriter::new(320, 240, b"AVCC");
        assert_eq!(head[..4], [0x1A, 0x45, 0xDF, 0xA3]);
        let seg = head.windows(4).position(|x| x == [0x18, 0x53, 0x80, 0x67]).unwrap();
        assert_eq!(head[seg + 4..seg + 12], UNKNOWN_SIZE);
        assert!(head.windows(8).any(|x| x == b"matroska"));
        assert!(head.windows(15).any(|x| x == b"V_MPEG4/ISO/AVC"));
        assert!(head.windows(7).any(|x| x == [0x63, 0xA2, 0x84, b'A', b'V', b'C', b'C']));
        assert!(head.windows(3).any(|x| x == [0xB0, 0x82, 0x01]), "PixelWidth 320");
        // The Void to be replaced by the Duration is where the writer says.
        let at = w.duration_at as usize;
        assert_eq!(head[at..at + 2], [0xEC, 0x89]);
        assert_eq!(head[at + 2..at + DURATION_LEN], [0; 9]);
        assert!(w.duration().is_none(), "no block yet: no duration");
    }

    #[test]
    fn clusters_start_at_keyframes_and_every_second_with_relative_block_times() {
        let (mut w, _) = MkvWriter::new(320, 240, b"");
        let first = w.frame(b"key", 500, true);
        let cluster = [&[0x1F, 0x43, 0xB6, 0x75][..], &UNKNOWN_SIZE, &[0xE7, 0x82, 0x01, 0xF4]].concat();
        let block = [0xA3, 0x87, 0x81, 0, 0, 0x80, b'k', b'e', b'y'];
        assert_eq!(first, [&cluster[..], &block].concat());
        assert_eq!(w.frame(b"p", 533, false), [0xA3, 0x85, 0x81, 0, 33, 0, b'p']);
        assert_eq!(w.frame(b"p", 520, false), [0xA3, 0x85, 0x81, 0, 34, 0, b'p'], "never back");
        assert_eq!(w.frame(b"p", 1499, false)[..1], [0xA3], "999 ms: same cluster");
        assert_eq!(w.frame(b"p", 1500, false)[..4], [0x1F, 0x43, 0xB6, 0x75], "a second: a new one");
        assert_eq!(w.frame(b"k", 1600, true)[..4], [0x1F, 0x43, 0xB6, 0x75], "a keyframe: a new one");
        let (_, duration) = w.duration().unwrap();
        assert_eq!(duration, [&[0x44, 0x89, 0x88][..], &1700f64.to_be_bytes()].concat());
    }
}
