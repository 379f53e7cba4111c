//! H.264 from the form str0m hands over (Annex B: NAL units behind `00 00 01` or `00 00 00 01`
//! start codes) to the form Matroska stores (ISO 14496-15: each NAL unit behind its 4-byte
//! big-endian length, and the SPS/PPS in an `avcC` record as the track's CodecPrivate).

/// NAL unit types (ITU-T H.264 Table 7-1) this module looks at.
const SPS: u8 = 7;
const PPS: u8 = 8;

/// The NAL units of an Annex B access unit, without start codes or trailing zero bytes.
pub(super) fn nal_units(frame: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = frame;
    std::iter::from_fn(move || {
        loop {
            let at = rest.windows(3).position(|w| w == [0, 0, 1])?;
            rest = &rest[at + 3..];
            let end = rest.windows(3).position(|w| w == [0, 0, 1]).unwrap_or(rest.len());
            let mut nal = &rest[..end];
            // The zero before a 4-byte start code (and cabac_zero_words) are not the NAL's.
            while let [head @ .., 0] = nal {
                nal = head;
            }
            rest = &rest[end..];
            if !nal.is_empty() {
                return Some(nal);
            }
        }
    })
}

/// The access unit with every NAL unit behind its 4-byte length (AVCC, `lengthSizeMinusOne` 3).
pub(super) fn to_avcc(frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len() + 16);
    for nal in nal_units(frame) {
        out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        out.extend_from_slice(nal);
    }
    out
}

/// The `AVCDecoderConfigurationRecord` (ISO 14496-15 §5.2.4.1) of the first SPS and PPS of an
/// access unit; `None` when it lacks either (a keyframe without them cannot start a file).
pub(super) fn avcc_record(frame: &[u8]) -> Option<Vec<u8>> {
    let sps = nal_units(frame).find(|n| n[0] & 0x1f == SPS && n.len() >= 4)?;
    let pps = nal_units(frame).find(|n| n[0] & 0x1f == PPS)?;
    let mut out = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
    out.extend_from_slice(&u16::try_from(sps.len()).ok()?.to_be_bytes());
    out.extend_from_slice(sps);
    out.push(1);
    out.extend_from_slice(&u16::try_from(pps.len()).ok()?.to_be_bytes());
    out.extend_from_slice(pps);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // An IDR access unit as str0m depacketizes it: SPS, PPS (a 3-byte start code), IDR slice
    // ending in a cabac_zero_word.
    const AU: &[u8] = &[
        0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0xd9, // SPS
        0, 0, 1, 0x68, 0xce, 0x3c, 0x80, // PPS
        0, 0, 0, 1, 0x65, 0x88, 0x80, 0x40, 0, 0, // IDR + zero word
    ];

    #[test]
    fn annex_b_becomes_length_prefixed_nal_units() {
        let nals: Vec<&[u8]> = nal_units(AU).collect();
        assert_eq!(nals, [&AU[4..9], &AU[12..16], &AU[20..24]]);
        let avcc = to_avcc(AU);
        assert_eq!(
            avcc,
            [&[0, 0, 0, 5][..], &AU[4..9], &[0, 0, 0, 4], &AU[12..16], &[0, 0, 0, 4], &AU[20..24]].concat()
        );
        assert!(to_avcc(&[0, 0, 0, 1]).is_empty(), "a start code alone");
        assert!(to_avcc(&[0x65, 0x88]).is_empty(), "no start code: nothing to keep");
    }

    #[test]
    fn builds_the_avcc_record_from_sps_and_pps() {
        let rec = avcc_record(AU).unwrap();
        let mut want = vec![1, 0x42, 0xc0, 0x1f, 0xff, 0xe1, 0, 5];
        want.extend_from_slice(&AU[4..9]);
        want.extend_from_slice(&[1, 0, 4]);
        want.extend_from_slice(&AU[12..16]);
        assert_eq!(rec, want);
        assert_eq!(avcc_record(&AU[16..]), None, "an IDR without SPS/PPS");
        assert_eq!(avcc_record(&AU[..9]), None, "an SPS without PPS");
    }
}
