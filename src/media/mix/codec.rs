//! Opus through `audiopus` over the system's libopus: 48 kHz mono, 20 ms frames. WebRTC signals
//! Opus as two channels, but a mono packet is valid in it and every decoder plays it.

use audiopus::coder::{Decoder as OpusDecoder, Encoder as OpusEncoder};
use audiopus::packet::Packet;
use audiopus::{Application, Bitrate, Channels, MutSignals, SampleRate};
use bytes::Bytes;

use super::FRAME;

/// Room for the longest Opus packet (120 ms at 48 kHz).
const MAX_DECODED: usize = 5760;
/// The largest packet we encode (Opus' recommended bound).
const MAX_PACKET: usize = 1275;

/// One input's decoder.
pub struct Decoder {
    inner: OpusDecoder,
    buf: Vec<i16>,
}

impl Decoder {
    /// A new decoder; `None` when libopus refuses (out of memory).
    pub fn new() -> Option<Self> {
        let inner = OpusDecoder::new(SampleRate::Hz48000, Channels::Mono).ok()?;
        Some(Self { inner, buf: vec![0; MAX_DECODED] })
    }

    /// Decodes one packet (`None`: conceal a lost one; `fec`: recover it from the next packet's
    /// redundancy) into `out` (one frame); a packet that does not decode plays as silence.
    pub fn decode(&mut self, packet: Option<&[u8]>, fec: bool, out: &mut [f32; FRAME as usize]) -> bool {
        let packet = match packet.map(Packet::try_from) {
            Some(Ok(p)) => Some(p),
            Some(Err(_)) => None,
            None => None,
        };
        // FEC decodes exactly one frame's worth; PLC too.
        let want = if packet.is_none() || fec { FRAME as usize } else { MAX_DECODED };
        let Ok(signals) = MutSignals::try_from(&mut self.buf[..want]) else {
            return false;
        };
        match self.inner.decode(packet, signals, fec) {
            Ok(n) => {
                let n = n.min(FRAME as usize);
                for (o, s) in out.iter_mut().zip(&self.buf[..n]) {
                    *o = f32::from(*s);
                }
                out[n..].fill(0.0);
                true
            }
            Err(_) => {
                out.fill(0.0);
                false
            }
        }
    }
}

/// One output stream's encoder.
pub struct Encoder {
    inner: OpusEncoder,
    buf: Vec<u8>,
}

impl Encoder {
    /// A voice encoder at `bitrate` bits/s with in-band FEC; `None` when libopus refuses.
    pub fn new(bitrate: i32) -> Option<Self> {
        let mut inner = OpusEncoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip).ok()?;
        inner.set_bitrate(Bitrate::BitsPerSecond(bitrate)).ok()?;
        inner.set_inband_fec(true).ok()?;
        inner.set_packet_loss_perc(5).ok()?;
        Some(Self { inner, buf: vec![0; MAX_PACKET] })
    }

    /// Encodes one frame.
    pub fn encode(&mut self, pcm: &[i16; FRAME as usize]) -> Option<Bytes> {
        let n = self.inner.encode(pcm, &mut self.buf).ok()?;
        Some(Bytes::copy_from_slice(&self.buf[..n]))
    }
}
