//! The mutator: one random edit per call, biased towards what breaks parsers (boundary bytes,
//! delimiters, length fields, big numbers, repeated structure).

use crate::rng::Rng;

/// Bytes that end, open or escape something in one format or another.
const INTERESTING: &[u8] = b"\x00\x01\x7f\x80\xff\n\r\t \"\\{}[]:,=.-+0129eE%&?#/\x1e\xc0\xe2\xef\xf0\xf4";

/// Numbers that overflow, underflow or sit on a boundary, as text.
const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "1e308",
    "1e999",
    "-0",
    "0.5",
    "00",
    "99999999999999999999999999",
];

/// Applies one edit to `data`; `other` is another input to splice from, `dict` the target's
/// tokens. The result stays under `max` bytes.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], dict: &[&[u8]], max: usize) {
    let len = data.len();
    match rng.below(13) {
        // Flip one bit.
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        // Overwrite a byte, at random or with a delimiter.
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = rng.byte();
        }
        2 if len > 0 => {
            let i = rng.below(len);
            data[i] = INTERESTING[rng.below(INTERESTING.len())];
        }
        // Insert a few bytes.
        3 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n)
                .map(
                    |_| if rng.chance(1, 2) { INTERESTING[rng.below(INTERESTING.len())] } else { rng.byte() },
                )
                .collect();
            data.splice(at..at, bytes);
        }
        // Delete a range.
        4 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(64));
            data.drain(at..at + n);
        }
        // Truncate.
        5 if len > 0 => data.truncate(rng.below(len)),
        // Repeat a range (nesting, repeated headers, many frames).
        6 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(256));
            let chunk = data[at..at + n].to_vec();
            let most = if rng.chance(1, 8) { 512 } else { 8 };
            let times = 1 + rng.below(most);
            let mut rep = Vec::with_capacity(n * times);
            for _ in 0..times {
                rep.extend_from_slice(&chunk);
            }
            data.splice(at..at, rep);
        }
        // Splice: our head, the other input's tail.
        7 if !other.is_empty() => {
            let cut = rng.below(len + 1);
            let from = rng.below(other.len());
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        // A dictionary token, inserted or replacing a range.
        8 | 9 if !dict.is_empty() => {
            let token = dict[rng.below(dict.len())];
            let at = rng.below(len + 1);
            let end = if rng.chance(1, 2) { at } else { (at + rng.below(16)).min(len) };
            data.splice(at..end, token.iter().copied());
        }
        // A binary length field: add a small delta to, or pin, a big-endian u16 or u32.
        10 if len >= 2 => {
            let wide = len >= 4 && rng.chance(1, 3);
            let width = if wide { 4 } else { 2 };
            let at = rng.below(len - width + 1);
            let mut v = data[at..at + width].iter().fold(0u64, |v, b| (v << 8) | u64::from(*b));
            v = match rng.below(6) {
                0 => v.wrapping_add(1),
                1 => v.wrapping_sub(1),
                2 => v.wrapping_add(4),
                3 => v.wrapping_sub(4),
                4 => 0,
                _ => u64::MAX,
            };
            for k in 0..width {
                data[at + k] = (v >> (8 * (width - 1 - k))) as u8;
            }
        }
        // A number in text: replace a run of digits with a boundary value.
        11 if len > 0 => {
            let start = rng.below(len);
            if let Some(d) = data[start..].iter().position(u8::is_ascii_digit) {
                let a = start + d;
                let b = a + data[a..].iter().take_while(|c| c.is_ascii_digit()).count();
                let n = NUMBERS[rng.below(NUMBERS.len())];
                data.splice(a..b, n.bytes());
            }
        }
        // Swap two bytes (reorders delimiters).
        12 if len >= 2 => {
            let (a, b) = (rng.below(len), rng.below(len));
            data.swap(a, b);
        }
        // The chosen edit did not apply (empty input): grow it.
        _ => data.push(INTERESTING[rng.below(INTERESTING.len())]),
    }
    data.truncate(max);
}
