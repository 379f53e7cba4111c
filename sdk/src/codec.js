// Wire encodings: base64, cursors (protocol.md "Cursors"), NDJSON lines, publications as the app sees them.

import { SwitchboardError } from './errors.js';

export const utf8Encoder = new TextEncoder();
export const utf8Decoder = new TextDecoder();

/** Standard base64 of bytes. */
export function bytesToBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

/** Bytes of a base64 string; accepts the standard and the URL-safe alphabet, padded or not. */
export function base64ToBytes(b64) {
  let s = String(b64).replace(/-/g, '+').replace(/_/g, '/').replace(/=+$/, '');
  s += '='.repeat((4 - (s.length % 4)) % 4);
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * Cursor of positions (protocol.md "Cursors"): URL-safe base64 without padding of the JSON
 * object `{channel: [epoch, offset]}`. Accepts `{channel: {epoch, offset}}` or `[epoch, offset]`.
 */
export function encodeCursor(positions) {
  const obj = {};
  for (const [channel, pos] of Object.entries(positions)) {
    if (pos == null) continue;
    obj[channel] = Array.isArray(pos) ? [pos[0], pos[1]] : [pos.epoch, pos.offset];
  }
  return bytesToBase64(utf8Encoder.encode(JSON.stringify(obj)))
    .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Positions in a cursor, as `{channel: {epoch, offset}}`. Throws a SwitchboardError (107) when it does not decode. */
export function decodeCursor(cursor) {
  let obj;
  try {
    obj = JSON.parse(utf8Decoder.decode(base64ToBytes(cursor)));
  } catch {
    throw new SwitchboardError(107, 'bad cursor');
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new SwitchboardError(107, 'bad cursor');
  const out = {};
  for (const [channel, pos] of Object.entries(obj)) {
    if (!Array.isArray(pos) || typeof pos[0] !== 'string' || typeof pos[1] !== 'number') {
      throw new SwitchboardError(107, 'bad cursor');
    }
    out[channel] = { epoch: pos[0], offset: pos[1] };
  }
  return out;
}

/** The positions in `cursor`, or null when there is none or it does not decode. */
export function tryDecodeCursor(cursor) {
  if (!cursor) return null;
  try { return decodeCursor(cursor); } catch { return null; }
}

/**
 * Splits a byte stream of NDJSON into lines, whatever the chunk boundaries (also inside a
 * multi-byte UTF-8 character). `push(chunk)` and `end()` call `onLine(line)` for each non-empty line.
 */
export function createLineSplitter(onLine) {
  const decoder = new TextDecoder();
  let buf = '';
  const drain = () => {
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i).replace(/\r$/, '');
      buf = buf.slice(i + 1);
      if (line.trim()) onLine(line);
    }
  };
  return {
    push(chunk) {
      buf += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
      drain();
    },
    end() {
      buf += decoder.decode();
      drain();
      if (buf.trim()) onLine(buf);
      buf = '';
    },
  };
}

/** Bytes to publish as a binary publication (anything else is JSON). */
export function isBinary(data) {
  return data instanceof ArrayBuffer || ArrayBuffer.isView(data);
}

/** The bytes of an ArrayBuffer or a view, as a Uint8Array (no copy). */
export function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** The publication as the app sees it: binary payloads (`b64` or a WS binary frame) become `Uint8Array`. */
export function normalizePub(raw, payload) {
  const p = { ...raw };
  if (payload) {
    p.data = payload;
    p.binary = true;
  } else if (typeof p.b64 === 'string') {
    p.data = base64ToBytes(p.b64);
    delete p.b64;
    p.binary = true;
  } else {
    p.binary = false;
  }
  return p;
}

/** `a` then `b` in one array. */
export function concatBytes(a, b) {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
