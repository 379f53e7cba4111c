//! Ogg/Opus files (RFC 7845) from Opus packets as WebRTC carries them, without transcoding: the
//! recorder writes audio-only recordings with it, and the audio mixer its room mix.
//!
//! Pages end about every second, so a file cut short (a crash) plays up to its last page.

use std::io::Write;

use ogg::writing::{PacketWriteEndInfo, PacketWriter};

/// Opus always counts time at 48 kHz.
pub const OPUS_RATE: u64 = 48_000;
/// Packets per page: 20 ms packets make a page a second.
const PACKETS_PER_PAGE: u32 = 50;

/// Writes one Opus stream into an Ogg file.
pub struct OggOpusWriter<W: Write> {
    ogg: PacketWriter<'static, W>,
    serial: u32,
    /// The granule position (48 kHz samples) of the end of the last packet.
    granule: u64,
    in_page: u32,
    /// The last packet, held back so that the stream's end marks it: an empty end-of-stream
    /// packet is not Opus, and decoders refuse it.
    pending: Option<(Vec<u8>, u64)>,
}

impl<W: Write> OggOpusWriter<W> {
    /// Starts a stream of `channels` channels (WebRTC's Opus is declared stereo: 2) on `w`.
    pub fn new(w: W, channels: u8) -> std::io::Result<Self> {
        let mut ogg = PacketWriter::new(w);
        let serial = rand::random::<u32>();
        let mut head = b"OpusHead".to_vec();
        head.push(1); // version
        head.push(channels.max(1));
        head.extend_from_slice(&0u16.to_le_bytes()); // pre-skip: none, the packets are as sent
        head.extend_from_slice(&48_000u32.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // mapping family 0: mono or stereo
        ogg.write_packet(head, serial, PacketWriteEndInfo::EndPage, 0)?;
        let vendor = b"switchboard";
        let mut tags = b"OpusTags".to_vec();
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor);
        tags.extend_from_slice(&0u32.to_le_bytes());
        ogg.write_packet(tags, serial, PacketWriteEndInfo::EndPage, 0)?;
        Ok(Self { ogg, serial, granule: 0, in_page: 0, pending: None })
    }

    /// Writes a packet that starts `start` samples (48 kHz) after the stream's start: a gap
    /// (lost packets, silence not sent) moves the granule on, so the file keeps its timing.
    pub fn write(&mut self, packet: &[u8], start: u64) -> std::io::Result<()> {
        let samples = packet_samples(packet).unwrap_or(960);
        self.granule = self.granule.max(start) + samples;
        let Some((last, granule)) = self.pending.replace((packet.to_vec(), self.granule)) else {
            return Ok(());
        };
        self.in_page += 1;
        let end = if self.in_page >= PACKETS_PER_PAGE {
            self.in_page = 0;
            PacketWriteEndInfo::EndPage
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        self.ogg.write_packet(last, self.serial, end, granule)
    }

    /// Ends the stream (the last page is marked so); the writer back.
    pub fn finish(mut self) -> std::io::Result<W> {
        if let Some((last, granule)) = self.pending.take() {
            self.ogg.write_packet(last, self.serial, PacketWriteEndInfo::EndStream, granule)?;
        }
        Ok(self.ogg.into_inner())
    }

    /// The writer, to flush it.
    pub fn inner_mut(&mut self) -> &mut W {
        self.ogg.inner_mut()
    }
}

/// Samples (48 kHz) in an Opus packet, from its TOC byte (RFC 6716 §3.1); `None` if malformed.
pub fn packet_samples(packet: &[u8]) -> Option<u64> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][(config % 4) as usize],
        12..=15 => [480, 960][(config % 2) as usize],
        _ => [120, 240, 480, 960][(config % 4) as usize],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => (*packet.get(1)? & 0x3f) as u64,
    };
    Some(frame * frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_lengths_follow_the_toc() {
        assert_eq!(packet_samples(&[0xf8, 0xff, 0xfe]), Some(960), "CELT FB 20 ms");
        assert_eq!(packet_samples(&[0x78]), Some(960), "SILK WB 20 ms (WebRTC's usual)");
        assert_eq!(packet_samples(&[0x79]), Some(1920), "two frames");
        assert_eq!(packet_samples(&[0x7b, 0x03]), Some(2880), "code 3: three frames");
        assert_eq!(packet_samples(&[]), None);
    }

    #[test]
    fn a_stream_has_the_headers_and_granules_that_count_samples() {
        let mut w = OggOpusWriter::new(Vec::new(), 2).unwrap();
        for i in 0..3u64 {
            w.write(&[0xf8, 0xff, 0xfe], i * 960).unwrap();
        }
        w.write(&[0xf8, 0xff, 0xfe], 10 * 960).unwrap();
        let bytes = w.finish().unwrap();
        let mut r = ogg::reading::PacketReader::new(std::io::Cursor::new(bytes));
        let head = r.read_packet_expected().unwrap();
        assert!(head.data.starts_with(b"OpusHead"));
        assert!(r.read_packet_expected().unwrap().data.starts_with(b"OpusTags"));
        let mut last = 0;
        let mut packets = 0;
        let mut ended = false;
        while let Some(p) = r.read_packet().unwrap() {
            assert!(!p.data.is_empty(), "every packet is Opus (decoders refuse empty ones)");
            assert!(!ended, "nothing after the end of the stream");
            last = p.absgp_page();
            packets += 1;
            ended = p.last_in_stream();
        }
        assert_eq!(packets, 4);
        assert!(ended, "the last packet ends the stream");
        assert_eq!(last, 11 * 960, "the gap is kept");
    }
}
