//! A video keyframe's picture size, read from its own header (the SFU never decodes): VP8's
//! keyframe header (RFC 6386 §9.1) and H.264's sequence parameter set (ITU-T H.264 §7.3.2.1).

/// The width and height a keyframe announces, when its codec is one of these and it says so.
pub(crate) fn keyframe_size(codec: str0m::format::Codec, frame: &[u8]) -> Option<(u16, u16)> {
    match codec {
        str0m::format::Codec::Vp8 => vp8(frame),
        str0m::format::Codec::H264 => h264(frame),
        _ => None,
    }
}

/// VP8: a 3-byte frame tag (bit 0 clear on a keyframe), the start code `9d 01 2a`, then width
/// and height as 14-bit little-endian numbers (the top 2 bits are the scaling mode).
fn vp8(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let h = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    (w > 0 && h > 0).then_some((w, h))
}

/// H.264: the first SPS NAL unit of an Annex B access unit (what the depacketizer hands over).
fn h264(frame: &[u8]) -> Option<(u16, u16)> {
    let mut rest = frame;
    while let Some(at) = rest.windows(3).position(|w| w == [0, 0, 1]) {
        rest = &rest[at + 3..];
        if rest.first().is_some_and(|b| b & 0x1f == 7) {
            let end = rest.windows(3).position(|w| w == [0, 0, 1] || w == [0, 0, 0]).unwrap_or(rest.len());
            return sps(&rest[1..end]);
        }
    }
    None
}

/// Width and height from an SPS's payload (after the NAL header byte).
fn sps(payload: &[u8]) -> Option<(u16, u16)> {
    // Emulation prevention: `00 00 03` stands for `00 00`.
    let mut rbsp = Vec::with_capacity(payload.len());
    for &b in payload {
        if b == 3 && rbsp.ends_with(&[0, 0]) {
            continue;
        }
        rbsp.push(b);
    }
    let mut r = Bits { data: &rbsp, at: 0 };
    let profile = r.bits(8)?;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let mut chroma = 1;
    if [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135].contains(&profile) {
        chroma = r.ue()?;
        if chroma == 3 {
            r.bits(1)?; // separate_colour_plane_flag
        }
        r.ue()?; // bit depths
        r.ue()?;
        r.bits(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.bits(1)? == 1 {
            for i in 0..if chroma == 3 { 12 } else { 8 } {
                if r.bits(1)? == 1 {
                    r.skip_scaling_list(if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bits(1)?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()?.min(255) {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bits(1)?; // gaps_in_frame_num_value_allowed_flag
    let w_mbs = r.ue()? + 1;
    let h_units = r.ue()? + 1;
    let frame_mbs_only = r.bits(1)?;
    if frame_mbs_only == 0 {
        r.bits(1)?; // mb_adaptive_frame_field_flag
    }
    r.bits(1)?; // direct_8x8_inference_flag
    let (mut left, mut right, mut top, mut bottom) = (0, 0, 0, 0);
    if r.bits(1)? == 1 {
        (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
    }
    let (sub_w, sub_h) = match chroma {
        0 => (1, 1),
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let crop_x = sub_w * (left + right);
    let crop_y = sub_h * (2 - frame_mbs_only) * (top + bottom);
    let w = (w_mbs * 16).checked_sub(crop_x)?;
    let h = ((2 - frame_mbs_only) * h_units * 16).checked_sub(crop_y)?;
    Some((u16::try_from(w).ok()?, u16::try_from(h).ok()?))
}

/// A big-endian bit reader with Exp-Golomb codes.
struct Bits<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = self.data.get(self.at / 8)?;
        let b = (byte >> (7 - self.at % 8)) & 1;
        self.at += 1;
        Some(b as u32)
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0, |acc, _| Some((acc << 1) | self.bit()?))
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }

    fn se(&mut self) -> Option<i32> {
        let k = self.ue()? as i64;
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -k / 2 } as i32)
    }

    fn skip_scaling_list(&mut self, size: usize) -> Option<()> {
        let (mut last, mut next) = (8i32, 8i32);
        for _ in 0..size {
            if next != 0 {
                next = (last + self.se()? + 256) % 256;
            }
            if next != 0 {
                last = next;
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::format::Codec;

    #[test]
    fn reads_a_vp8_keyframe_and_ignores_interframes() {
        // Frame tag (keyframe), start code, 640 and 360 with a scaling mode in the top bits.
        let key = [0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x42, 0x68, 0x01, 0xff];
        assert_eq!(keyframe_size(Codec::Vp8, &key), Some((640, 360)));
        let mut inter = key;
        inter[0] |= 1;
        assert_eq!(keyframe_size(Codec::Vp8, &inter), None);
        assert_eq!(keyframe_size(Codec::Vp8, &key[..9]), None, "too short");
        assert_eq!(keyframe_size(Codec::Opus, &key), None);
    }

    #[test]
    fn reads_h264_sps_with_cropping_and_high_profile() {
        // SPSs from x264 (ffmpeg testsrc): High, Constrained Baseline, Main with 8 lines
        // cropped (1088 coded), High 4:4:4 with odd cropping.
        let cases = [
            ("000000016764000dacd94141fb011000000300100000030320f14299600000000165", (320, 240)),
            ("000000016742c01fd9005005bb011000000300100000030320f1832480", (1280, 720)),
            ("00000001674d4028eca03c0113f2e022000003000200000300641e30632c", (1920, 1080)),
            ("0000000167f4001e919b281485fc7cf808800000030080000019078b16cb", (642, 362)),
        ];
        for (sps, size) in cases {
            assert_eq!(keyframe_size(Codec::H264, &hex(sps)), Some(size), "{sps}");
        }
        assert_eq!(keyframe_size(Codec::H264, &hex("0000000165888000")), None, "no SPS");
        assert_eq!(keyframe_size(Codec::H264, &hex("000000016764")), None, "truncated");
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }
}
