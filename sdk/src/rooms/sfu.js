// SFU calls (docs/webrtc.md): which tracks to receive, and the peer connection to the server.

import { SwitchboardError } from '../errors.js';
import { iceGathered } from '../ice.js';
import { backoffDelay } from '../retry.js';
import { KINDS, defaultLabel, streamOf } from './tracks.js';

const noop = () => {};

/** Simulcast layers, low to high; the SFU's `layers` and `setLayer` name them by rid. */
const SIMULCAST_LAYERS = [
  { rid: 'q', scaleResolutionDownBy: 4 },
  { rid: 'h', scaleResolutionDownBy: 2 },
  { rid: 'f', scaleResolutionDownBy: 1 },
];

/**
 * What an SFU participant changes so that its receive m-lines carry exactly the room's tracks
 * that are not its own, nor served by the server (a composition's or a filter pipeline's output,
 * participant `server`: each would cost every participant a stream; a page plays one with WHEP
 * `?track=`, docs/video.md). `receivers`: `[{mid, kind, trackId}]` (trackId null: free); `tracks`:
 * the room's whole track list; `self`: own client id(s). Returns `{release: [{mid, trackId}],
 * assign: [{mid, track}], create: [track]}`: m-lines to stop (a released one may be assigned again
 * in the same plan), free m-lines to point at a track, and tracks that need a new m-line.
 */
export function planSubscriptions(receivers, tracks, self) {
  const mine = new Set(typeof self === 'string' ? [self] : self || []);
  const wanted = new Map();
  for (const t of tracks || []) {
    if (t && t.id != null && KINDS.includes(t.kind) && !mine.has(t.participant) && t.participant !== 'server' && !wanted.has(t.id)) {
      wanted.set(t.id, t);
    }
  }
  const release = [];
  const free = [];
  const held = new Set();
  for (const r of receivers) {
    const t = r.trackId != null ? wanted.get(r.trackId) : null;
    if (t && t.kind === r.kind && !held.has(t.id)) {
      held.add(t.id);
      continue;
    }
    if (r.trackId != null) release.push({ mid: r.mid, trackId: r.trackId });
    free.push(r);
  }
  const assign = [];
  const create = [];
  for (const t of wanted.values()) {
    if (held.has(t.id)) continue;
    const i = free.findIndex((r) => r.kind === t.kind);
    if (i >= 0) assign.push({ mid: free.splice(i, 1)[0].mid, track: t });
    else create.push(t);
  }
  return { release, assign, create };
}

/**
 * SFU calls: one peer connection to the server, negotiated over HTTP (`/rtc/sfu/ROOM`, then
 * PATCH and DELETE on the peer's resource), one negotiation at a time. The browser always offers.
 */
export class SfuCall {
  constructor(room) {
    this.room = room;
    /** The current peer connection: {pc, peer, url, receivers: [{t, kind, trackId}], senders: Map(local entry → transceiver)}. */
    this.link = null;
    this.failures = 0;
    this.tracks = []; // the SFU's latest track list
    this.audioMix = false; // the room's namespace mixes audio (`audio_mix`)
    this.syncQueued = false;
    this.queue = Promise.resolve(); // negotiations, one at a time
  }

  /** The peer connection to the SFU, or null. */
  get pc() {
    return this.link ? this.link.pc : null;
  }

  /** Runs `fn` after every negotiation before it. The result rejects on failure; the error event fires too. */
  enqueue(fn) {
    const task = this.queue.then(fn);
    this.queue = task.catch((err) => this.room._error(err));
    return task;
  }

  /** Starts the peer connection of join number `gen` (after the negotiations queued before). */
  start(gen) {
    return this.enqueue(() => this._start(gen));
  }

  /** The room's track list changed (`{"sfu": {"tracks", "audio_mix"}}` on the room channel). */
  setTracks(tracks, audioMix = false) {
    this.tracks = tracks;
    this.audioMix = audioMix;
    this.syncSoon();
  }

  /** Whether audio comes as the room's one mixed track (asked for, or the room's namespace mixes). */
  get mixed() {
    return this.room._audioMixed || !!this.audioMix;
  }

  publish(e) {
    if (this.link) this.enqueue(() => this._publish(e));
  }

  unpublish(e) {
    if (this.link) this.enqueue(() => this._unpublish(e));
  }

  /** The sender that sends local entry `e`, or null. */
  senderOf(e) {
    const t = this.link && this.link.senders.get(e);
    return t ? t.sender : null;
  }

  /** Asks for simulcast layer `rid` of a received track. */
  setLayer(trackId, rid) {
    return this.enqueue(async () => {
      const sfu = this.link;
      const r = sfu && sfu.peer && sfu.receivers.find((x) => x.trackId === trackId && x.t.mid != null);
      if (!r) throw new SwitchboardError(0, `setLayer: track ${trackId} is not received from the SFU`);
      await this.room._sb._api('PATCH', this._peerPath(sfu), { body: { layers: { [r.t.mid]: rid } } });
    });
  }

  /** Closes the peer connection; resolves once the server was told (DELETE). */
  teardown() {
    const sfu = this.link;
    if (!sfu) return Promise.resolve();
    this.link = null;
    sfu.pc.onconnectionstatechange = null;
    try { sfu.pc.close(); } catch { /* already closed */ }
    this.room._endTracksOf(sfu.pc);
    return this._delete(sfu);
  }

  /** The peer's resource: the absolute URL the server gave (another node's, in a cluster). */
  _peerPath(sfu) {
    return sfu.url || `/rtc/peers/${encodeURIComponent(sfu.peer)}`;
  }

  /** Offer with every candidate in it (the SFU takes no trickle): gathering done or 2 s. */
  async _offer(pc) {
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc, this.room._sb);
    return pc.localDescription.sdp;
  }

  async _start(gen) {
    const room = this.room;
    if (gen !== room._gen || room.state !== 'joined') return;
    const pc = new room._sb._RTCPeerConnection(room._pcConfig());
    const sfu = { pc, peer: null, url: null, receivers: [], senders: new Map() };
    this.link = sfu;
    pc.onconnectionstatechange = () => this._state(sfu);
    try {
      for (const e of room._local) this._sender(sfu, e);
      // An offer needs an m-line: with nothing to send, start with free receive m-lines.
      if (!room._local.length) for (const kind of KINDS) this._receiver(sfu, kind);
      const sdp = await this._offer(pc);
      if (sfu !== this.link) return;
      const publish = {};
      for (const [e, t] of sfu.senders) publish[t.mid] = e.label;
      const body = { client: room.clientId, sdp, publish, subscribe: {} };
      const path = `/rtc/sfu/${encodeURIComponent(room.name)}`;
      let res;
      try {
        res = await room._sb._api('POST', path, { body });
      } catch (err) {
        // In a cluster the room's media lives on one node: go there (code 111 names it).
        if (!(err && err.code === 111 && err.node)) throw err;
        res = await room._sb._api('POST', `${err.node.replace(/\/+$/, '')}${path}`, { body });
      }
      if (sfu !== this.link) {
        this._delete({ peer: res.peer, url: res.url });
        return;
      }
      sfu.peer = res.peer;
      sfu.url = res.url || null;
      await pc.setRemoteDescription({ type: 'answer', sdp: res.sdp });
      if (Array.isArray(res.tracks)) this.tracks = res.tracks;
      if (res.audio_mix === true) this.audioMix = true;
    } catch (err) {
      if (sfu !== this.link) return;
      this.teardown();
      throw err;
    }
    this.syncSoon();
  }

  _sender(sfu, e) {
    const init = { direction: 'sendonly' };
    if (e.stream) init.streams = [e.stream];
    if (this.room._simulcast && e.track.kind === 'video') init.sendEncodings = SIMULCAST_LAYERS.map((l) => ({ ...l }));
    const t = sfu.pc.addTransceiver(e.track, init);
    sfu.senders.set(e, t);
    return t;
  }

  _receiver(sfu, kind) {
    const r = { t: sfu.pc.addTransceiver(kind, { direction: 'recvonly' }), kind, trackId: null };
    sfu.receivers.push(r);
    return r;
  }

  async _publish(e) {
    const sfu = this.link;
    if (!sfu || !sfu.peer || sfu.senders.has(e) || !this.room._local.includes(e)) return;
    const t = this._sender(sfu, e);
    await this._renegotiate(sfu, () => ({ publish: { [t.mid]: e.label } }), () => {
      sfu.senders.delete(e);
      t.stop();
    });
  }

  async _unpublish(e) {
    const sfu = this.link;
    const t = sfu && sfu.peer && sfu.senders.get(e);
    if (!t) return;
    sfu.senders.delete(e);
    t.stop(); // rejected in the next offer: the server drops the track
    await this._renegotiate(sfu, () => ({}), noop);
  }

  /** New offer, `PATCH {sdp, ...extra()}`, answer. `undo` runs after a rollback when it fails. */
  async _renegotiate(sfu, extra, undo) {
    try {
      const sdp = await this._offer(sfu.pc);
      const res = await this.room._sb._api('PATCH', this._peerPath(sfu), { body: { sdp, ...extra() } });
      if (sfu === this.link) await sfu.pc.setRemoteDescription({ type: 'answer', sdp: res.sdp });
    } catch (err) {
      if (sfu !== this.link) return;
      await this._rollback(sfu);
      undo();
      throw err;
    }
  }

  async _rollback(sfu) {
    if (sfu.pc.signalingState !== 'have-local-offer') return;
    try { await sfu.pc.setLocalDescription({ type: 'rollback' }); } catch { /* the next offer starts over */ }
  }

  syncSoon() {
    if (this.syncQueued || this.room.mode !== 'sfu') return;
    this.syncQueued = true;
    this.enqueue(() => this._sync());
  }

  /** Brings the receive m-lines in line with the latest track list, in one PATCH. */
  async _sync() {
    this.syncQueued = false;
    const room = this.room;
    const sfu = this.link;
    if (!sfu || !sfu.peer) return;
    const live = sfu.receivers.filter((r) => r.t.mid != null);
    const mine = [room.clientId, ...room._pastIds];
    // Mixed audio: the others' audio tracks come as one, on an m-line of its own.
    const tracks = this.mixed ? this.tracks.filter((t) => t && t.kind !== 'audio') : this.tracks;
    const plan = planSubscriptions(live.map((r) => ({ mid: r.t.mid, kind: r.kind, trackId: r.trackId })), tracks, mine);
    const mix = this.mixed && !sfu.mix ? { t: sfu.pc.addTransceiver('audio', { direction: 'recvonly' }) } : null;
    if (!mix && !plan.release.length && !plan.assign.length && !plan.create.length) return;
    const at = (mid) => live.find((r) => r.t.mid === mid);
    const subscribe = {};
    for (const { mid, trackId } of plan.release) {
      at(mid).trackId = null;
      subscribe[mid] = null;
      room._trackEnded(trackId);
    }
    const created = plan.create.map((track) => [this._receiver(sfu, track.kind), track]);
    const fresh = [...plan.assign.map(({ mid, track }) => [at(mid), track]), ...created];
    for (const [r, track] of fresh) r.trackId = track.id;
    try {
      const body = { subscribe };
      if (created.length || mix) body.sdp = await this._offer(sfu.pc);
      for (const [r, track] of fresh) subscribe[r.t.mid] = track.id;
      if (mix) subscribe[mix.t.mid] = 'mix';
      const res = await room._sb._api('PATCH', this._peerPath(sfu), { body });
      if (body.sdp && sfu === this.link) await sfu.pc.setRemoteDescription({ type: 'answer', sdp: res.sdp });
    } catch (err) {
      if (sfu !== this.link) return;
      // Free what the server did not take; the next track list tries again.
      for (const [r] of fresh) r.trackId = null;
      await this._rollback(sfu);
      if (mix) try { mix.t.stop(); } catch { /* never negotiated */ }
      for (const [r] of created) {
        try { r.t.stop(); } catch { /* never negotiated */ }
        sfu.receivers = sfu.receivers.filter((x) => x !== r);
      }
      throw err;
    }
    if (sfu !== this.link) return;
    if (mix) {
      sfu.mix = mix;
      const mst = mix.t.receiver.track;
      room._addRemote({
        participant: { client: 'mix', user: null, name: 'Room mix' },
        track: mst,
        stream: streamOf(mst),
        kind: 'audio',
        label: 'mix',
        trackId: 'mix',
        mid: mix.t.mid,
        layers: [],
        pc: sfu.pc,
      });
    }
    for (const [r, track] of fresh) {
      const mst = r.t.receiver.track;
      room._addRemote({
        participant: room._participant(track.participant, track.name),
        track: mst,
        stream: streamOf(mst),
        kind: track.kind,
        label: track.label || defaultLabel(mst),
        trackId: track.id,
        mid: r.t.mid,
        layers: Array.isArray(track.layers) ? track.layers : [],
        pc: sfu.pc,
      });
    }
  }

  _state(sfu) {
    if (sfu !== this.link) return;
    const room = this.room;
    const s = sfu.pc.connectionState;
    if (s === 'connected') this.failures = 0;
    if (s !== 'failed') return;
    // The server drops a failed peer's tracks: start a new peer connection after a backoff delay.
    room._error(new SwitchboardError(0, 'SFU connection failed'));
    this.teardown();
    const gen = room._gen;
    const sb = room._sb;
    sb._setTimeout(() => {
      if (gen === room._gen && room.state === 'joined') this.start(gen);
    }, backoffDelay(this.failures++, sb._backoff, sb._random));
  }

  _delete(sfu) {
    if (!sfu.peer) return Promise.resolve();
    return this.room._sb._api('DELETE', this._peerPath(sfu)).then(noop, noop);
  }
}
