//! RFC 6455 frames as a server sends them (final, unmasked), so that a publication is framed
//! once and the same bytes go to every WebSocket subscriber.

/// The frame header for a final, unmasked text (or `binary`) frame of `len` payload bytes:
/// 2 bytes up to 125, 4 up to 65,535, 10 beyond.
pub fn header(binary: bool, len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x80 | if binary { 0x2 } else { 0x1 };
    let n = if len < 126 {
        h[1] = len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        h[1] = 126;
        h[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    (h, n)
}

/// A whole frame carrying `payload`, and where the payload starts in it.
pub fn frame(binary: bool, payload: &[u8]) -> (Vec<u8>, usize) {
    let (h, n) = header(binary, payload.len());
    let mut out = Vec::with_capacity(n + payload.len());
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(payload);
    (out, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_forms_at_their_boundaries() {
        assert_eq!(header(false, 0), ([0x81, 0, 0, 0, 0, 0, 0, 0, 0, 0], 2));
        assert_eq!(&header(false, 125).0[..2], &[0x81, 125]);
        assert_eq!(header(true, 126).1, 4);
        assert_eq!(&header(true, 126).0[..4], &[0x82, 126, 0, 126]);
        assert_eq!(&header(false, 65_535).0[..4], &[0x81, 126, 0xff, 0xff]);
        let (h, n) = header(false, 65_536);
        assert_eq!(n, 10);
        assert_eq!(&h[..10], &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn a_frame_is_its_header_then_the_payload() {
        let (f, at) = frame(false, b"{\"pub\":1}");
        assert_eq!(at, 2);
        assert_eq!(f[..2], [0x81, 9]);
        assert_eq!(&f[at..], b"{\"pub\":1}");
    }
}
