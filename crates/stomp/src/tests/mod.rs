//! Unit tests, one file per module under test.

mod decoding;
mod encoding;
mod negotiation;

use bytes::BytesMut;

use crate::{DecodeError, Decoded, Frame, Limits, Version, decode};

/// Decodes everything in `bytes`: the items, and the error or `None` that stopped it.
fn decode_all(
    bytes: &[u8],
    version: Version,
    limits: &Limits,
) -> (Vec<Decoded>, Result<(), DecodeError>, BytesMut) {
    let mut buf = BytesMut::from(bytes);
    let mut items = Vec::new();
    loop {
        match decode(&mut buf, version, limits) {
            Ok(Some(item)) => items.push(item),
            Ok(None) => return (items, Ok(()), buf),
            Err(error) => return (items, Err(error), buf),
        }
    }
}

/// The single frame `bytes` holds, which must be complete and valid.
fn one_frame(bytes: &[u8], version: Version) -> Frame {
    match decode_all(bytes, version, &Limits::default()) {
        (items, Ok(()), rest) if rest.is_empty() => match <[Decoded; 1]>::try_from(items) {
            Ok([Decoded::Frame(frame)]) => frame,
            Ok(other) => panic!("not a frame: {other:?}"),
            Err(items) => panic!("not one item: {items:?}"),
        },
        other => panic!("not one complete frame: {other:?}"),
    }
}

/// The error decoding `bytes` stops at, with default limits.
fn decode_error(bytes: &[u8], version: Version) -> DecodeError {
    decode_error_with(bytes, version, &Limits::default())
}

fn decode_error_with(bytes: &[u8], version: Version, limits: &Limits) -> DecodeError {
    match decode_all(bytes, version, limits) {
        (_, Err(error), rest) => {
            assert!(rest.ends_with(&bytes[bytes.len() - rest.len()..]));
            error
        }
        other => panic!("no error: {other:?}"),
    }
}
