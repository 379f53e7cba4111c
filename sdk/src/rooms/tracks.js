// What the room's parts share about media tracks.

/** The kinds of track a room carries. */
export const KINDS = ['audio', 'video'];

/** The label of a track sent without one: `mic` or `camera`. */
export function defaultLabel(track) {
  return track.kind === 'audio' ? 'mic' : 'camera';
}

/** A stream holding just `track` (none outside a browser). */
export function streamOf(track) {
  return typeof MediaStream === 'function' ? new MediaStream([track]) : null;
}
