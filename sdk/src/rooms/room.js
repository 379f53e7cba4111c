// A WebRTC call (docs/webrtc.md) on a room channel: who is in it, what this participant sends,
// what it receives, active speakers. The media go through a mesh (mesh.js) or the SFU (sfu.js).

import { SwitchboardError, report } from '../errors.js';
import { Emitter, firstOf } from '../emitter.js';
import { Mesh, inboxChannel } from './mesh.js';
import { SfuCall } from './sfu.js';
import { defaultLabel, streamOf } from './tracks.js';

/** How long leaving waits for its byes to go out over HTTP before it leaves the room channel. */
const BYE_WAIT_MS = 2000;

/** Resolves once `sub` is subscribed; rejects when it is refused or the room is left meanwhile. */
function whenSubscribed(sub, room) {
  if (sub.state === 'subscribed') return Promise.resolve();
  return firstOf((ok, fail) => [
    sub.on('subscribed', () => ok()),
    sub.on('error', fail),
    sub.on('unsubscribed', (e) => fail(new SwitchboardError(e.code || 0, e.reason || 'unsubscribed'))),
    room.on('_left', () => fail(new SwitchboardError(0, 'left the room'))),
  ]);
}

/** @typedef {import('../../switchboard.js').Room} RoomApi */

/** @implements {RoomApi} */
export class Room extends Emitter {
  constructor(client, name, opts = {}) {
    super();
    if (typeof name !== 'string' || !name || name.length > 255 || name.includes('@')) {
      throw new TypeError('Switchboard: a room is a channel name without `@`, e.g. room:lobby');
    }
    const mode = opts.mode ?? 'mesh';
    if (mode !== 'mesh' && mode !== 'sfu') throw new TypeError(`Switchboard: unknown room mode ${mode}`);
    this._sb = client;
    this.name = name;
    this.mode = mode;
    /** @type {'idle' | 'joining' | 'joined' | 'left'} */
    this.state = 'idle';
    /** This participant's client id; kept across reconnects unless the server cannot (then a rejoin). */
    this.clientId = null;
    this._rejoinGraceMs = opts.rejoinGraceMs ?? 15000;
    this._speakerIntervalMs = opts.speakerIntervalMs ?? 500;
    this._speakerThreshold = opts.speakerThreshold ?? 0.01;
    this._speakerTimer = null;
    this._speakersKey = '';
    this._energy = new Map(); // audio source → {e, d}: totals at the previous measurement
    this._givenIce = opts.iceServers ?? null;
    this._iceServers = [];
    this._icePolicy = opts.iceTransportPolicy ?? 'all';
    this._simulcast = !!opts.simulcast;
    const audio = opts.audio ?? 'tracks';
    if (audio !== 'tracks' && audio !== 'mixed') throw new TypeError(`Switchboard: unknown room audio ${audio}`);
    if (audio === 'mixed' && mode !== 'sfu') throw new TypeError('Switchboard: mixed audio needs mode sfu');
    /** SFU: receive one mixed audio track (everyone but this participant) instead of one per participant. */
    this._audioMixed = audio === 'mixed';
    this._muted = { audio: false, video: false };
    /** What this participant sends: {track, label, stream, media (from `media`/setMedia)}. */
    this._local = opts.media
      ? opts.media.getTracks().map((track) => ({ track, label: defaultLabel(track), stream: opts.media, media: true }))
      : [];
    this._people = new Map(); // client id → {client, user, name}
    this._pastIds = new Set(); // own ids of earlier connections: presence may still list them
    this._remote = new Map(); // trackId → track event, plus the pc it arrives on
    this._mesh = new Mesh(this); // mesh mode: the peer connections to the others
    this._sfu = new SfuCall(this); // SFU mode: the peer connection to the server
    this._gen = 0;
    this._sub = null;
    this._inbox = null;
    this._offState = null;
    this._bitrates = new Map(); // trackId → {bytes, at, bitrate} at the previous stats()
    this._reported = new WeakSet();
  }

  // --- public API ---------------------------------------------------------------------------

  /** Everyone in the room (this participant too), from its presence. */
  participants() {
    return [...this._people.values()];
  }

  /** Joins: subscribes to the room and this participant's inbox, then starts the media. */
  async join() {
    if (this.state === 'joining' || this.state === 'joined') return this;
    this.state = 'joining';
    try {
      await this._connected();
      if (this.state !== 'joining') throw new SwitchboardError(0, 'left the room');
      const offState = this._sb.on('state', (e) => this._onClientState(e));
      const offId = this._sb.on('_clientid', () => this._onClientState({ state: this._sb.state }));
      this._offState = () => { offState(); offId(); };
      if (this._listeners.get('speakers')?.size) this._speakerLoop();
      await this._start();
      if (this._hasLeft()) throw new SwitchboardError(0, 'left the room');
      return this;
    } catch (err) {
      if (!this._hasLeft()) {
        this._error(err);
        this.leave();
      }
      throw err;
    }
  }

  /** Whether leave() ran; a method, as it may run while join() awaits (the type checker assumes not). */
  _hasLeft() {
    return this.state === 'left';
  }

  /** Closes every peer connection (mesh peers get a `bye`, the SFU peer a DELETE) and leaves. */
  async leave() {
    if (this.state === 'left') return;
    this.state = 'left';
    this._gen++;
    if (this._speakerTimer != null) this._sb._clearTimeout(this._speakerTimer);
    this._speakerTimer = null;
    this._speakersKey = '';
    this._emit('_left');
    if (this._offState) this._offState();
    this._offState = null;
    const byes = this._mesh.closeAll(true);
    const deleted = this._sfu.teardown();
    // Over HTTP (the one-way fallbacks) each bye is a request of its own, which the unsubscribe
    // below could overtake: the server refuses a signal from a client no longer in the room
    // (103). So leave once they are sent, or after a bound. A socket keeps their order.
    if (!this._sb._wsConn()) {
      await Promise.race([byes, new Promise((r) => this._sb._setTimeout(r, BYE_WAIT_MS))]);
    }
    if (this._inbox) this._inbox.unsubscribe();
    if (this._sub) this._sub.unsubscribe();
    this._inbox = this._sub = null;
    this.clientId = null;
    this._people.clear();
    this._sfu.tracks = [];
    this._emit('participants', []);
    await deleted;
  }

  /** Replaces the camera/microphone media (tracks of the same kind are swapped without renegotiating). */
  setMedia(stream) {
    const old = this._local.filter((e) => e.media);
    for (const track of stream ? stream.getTracks() : []) {
      const i = old.findIndex((e) => e.track.kind === track.kind);
      if (i < 0) {
        this._publish({ track, label: defaultLabel(track), stream, media: true });
        continue;
      }
      const e = old.splice(i, 1)[0];
      e.stream = stream;
      this._replace(e, track);
    }
    for (const e of old) this._unpublish(e);
  }

  /** Sends one more track, e.g. a screen share: `addTrack(screenTrack, 'screen')`. */
  addTrack(track, label = defaultLabel(track)) {
    if (this._local.some((e) => e.track === track)) return;
    this._publish({ track, label: String(label), stream: streamOf(track), media: false });
  }

  /** Stops sending `track` (the track itself keeps running: stop it yourself). */
  removeTrack(track) {
    const e = this._local.find((x) => x.track === track);
    if (e) this._unpublish(e);
  }

  /** Mutes (track.enabled = false) every local track of `kind` except screen shares. */
  setMuted(kind, muted) {
    this._muted[kind] = !!muted;
    for (const e of this._local) if (e.track.kind === kind && e.label !== 'screen') e.track.enabled = !muted;
  }

  /** SFU: asks for simulcast layer `rid` ('q' | 'h' | 'f') of a received track. */
  setLayer(trackId, rid) {
    return this._sfu.setLayer(trackId, rid);
  }

  /** Listening for `speakers` starts measuring audio levels (every `speakerIntervalMs`). */
  on(type, fn) {
    const off = super.on(type, fn);
    if (type === 'speakers' && (this.state === 'joining' || this.state === 'joined')) this._speakerLoop();
    return off;
  }

  /** Inbound statistics of each remote track: size, frames decoded, bitrate since the last call. */
  async stats() {
    const out = [];
    const pcs = new Set([...this._remote.values()].map((i) => i.pc));
    for (const pc of pcs) {
      let report;
      try { report = await pc.getStats(); } catch { continue; }
      report.forEach((s) => {
        if (s.type !== 'inbound-rtp') return;
        const info = this._remoteFor(pc, s);
        if (info) out.push(this._trackStats(info, s));
      });
    }
    return out;
  }

  // --- active speakers ----------------------------------------------------------------------

  _speakerLoop() {
    if (this._speakerTimer != null) return;
    const tick = async () => {
      const listening = this._listeners.get('speakers')?.size > 0;
      if (this.state === 'left' || !listening) {
        this._speakerTimer = null;
        return;
      }
      try {
        await this._measureSpeakers();
      } catch {
        // getStats fails on a peer connection closing under it: the next round measures again
      }
      this._speakerTimer = this._sb._setTimeout(tick, this._speakerIntervalMs);
    };
    this._speakerTimer = this._sb._setTimeout(tick, this._speakerIntervalMs);
  }

  /**
   * Who spoke since the last round: the RMS level of each participant's audio over the round
   * (from the energy totals in getStats, so short sounds between two rounds count), this
   * participant's own microphone included. `speakers` fires when the loudest-first list changes.
   */
  async _measureSpeakers() {
    const before = this._energy;
    const now = new Map();
    const levels = new Map(); // client id → level
    const note = (key, client, s) => {
      const e = s.totalAudioEnergy;
      const d = s.totalSamplesDuration;
      if (typeof e !== 'number' || typeof d !== 'number' || !client) return false;
      now.set(key, { e, d });
      const prev = before.get(key);
      if (!prev || d <= prev.d) return false;
      louder(client, Math.sqrt(Math.max(0, e - prev.e) / (d - prev.d)));
      return true;
    };
    const louder = (client, level) => {
      if (level > (levels.get(client) ?? 0)) levels.set(client, level);
    };
    const heard = []; // remote audio not played out (no energy totals): the last packet's level
    const pcs = new Set([...this._remote.values()].map((i) => i.pc));
    const mine = this._sfu.pc || this._mesh.anyPc();
    if (mine) pcs.add(mine);
    for (const pc of pcs) {
      const report = await pc.getStats();
      report.forEach((s) => {
        if (s.kind !== 'audio') return;
        if (s.type === 'inbound-rtp') {
          const info = this._remoteFor(pc, s);
          if (info) note(`in:${info.trackId}`, info.participant.client, s) || heard.push(info);
        } else if (s.type === 'media-source' && pc === mine && !this._muted.audio) {
          note(`out:${s.trackIdentifier || s.id}`, this.clientId, s);
        }
      });
    }
    for (const info of heard) {
      const receiver = info.pc.getReceivers().find((r) => r.track === info.track);
      const src = receiver && receiver.getSynchronizationSources ? receiver.getSynchronizationSources()[0] : null;
      if (src && typeof src.audioLevel === 'number') louder(info.participant.client, src.audioLevel);
    }
    this._energy = now;
    if (this.state !== 'joined') return;
    const speakers = [...levels]
      .filter(([, level]) => level >= this._speakerThreshold)
      .sort((a, b) => b[1] - a[1])
      .map(([client, level]) => ({ participant: this._participant(client), level }));
    const key = speakers.map((x) => x.participant.client).join(',');
    if (key === this._speakersKey) return;
    this._speakersKey = key;
    this._emit('speakers', speakers);
  }

  // --- joining and rejoining ----------------------------------------------------------------

  async _connected() {
    const sb = this._sb;
    if (sb.state === 'disconnected' || sb.state === 'closed') sb.connect();
    if (sb.state !== 'connected') {
      await firstOf((ok, fail) => [
        sb.on('state', (e) => {
          if (e.state === 'connected') ok();
          else if (e.state === 'closed' || e.state === 'disconnected') {
            fail(new SwitchboardError(e.code || 0, `cannot connect: ${e.reason || e.state}`));
          }
        }),
        this.on('_left', () => fail(new SwitchboardError(0, 'left the room'))),
      ]);
    }
  }

  /**
   * A reconnect normally keeps the client id, and with it the inbox, peer connections and SFU
   * tracks. A new id (the server could not reclaim the old one) is a new participant: rejoin.
   */
  _onClientState(e) {
    const id = this._sb.clientId;
    if (e.state !== 'connected' || !id || id === this.clientId) return;
    if (this.state !== 'joined' && this.state !== 'joining') return;
    this._teardownMedia();
    this.state = 'joining';
    this._start().catch((err) => this._error(err));
  }

  async _start() {
    const gen = ++this._gen;
    const sb = this._sb;
    if (!this._sub || sb.getSubscription(this.name) !== this._sub) this._sub = this._subscribeRoom();
    // A one-way transport holds no connection (and has no client id) until it has a channel.
    if (!sb.clientId) await whenSubscribed(this._sub, this);
    if (gen !== this._gen) return;
    if (!sb.clientId) {
      throw new SwitchboardError(0, 'rooms need a transport with a client id: not short or long polling');
    }
    if (this.clientId && this.clientId !== sb.clientId) {
      this._pastIds.add(this.clientId);
      this._people.delete(this.clientId);
    }
    this.clientId = sb.clientId;
    // ICE servers first: an offer may arrive as soon as the inbox is subscribed.
    this._iceServers = this._givenIce ?? (await sb._fetchIceServers(await sb._ensureToken()));
    if (gen !== this._gen) return;
    if (this._inbox) this._inbox.unsubscribe();
    const inbox = sb.subscribe(inboxChannel(this.name, this.clientId));
    this._inbox = inbox;
    inbox.on('publication', (p) => this._mesh.onSignal(p));
    inbox.on('error', (err) => this._error(err));
    await Promise.all([whenSubscribed(inbox, this), whenSubscribed(this._sub, this)]);
    if (gen !== this._gen) return;
    await this._refreshPresence();
    if (gen !== this._gen) return;
    this.state = 'joined';
    if (this.mode === 'mesh') {
      // The newcomer offers to everyone already there; members wait for newcomers' offers.
      for (const id of this._people.keys()) if (id !== this.clientId) this._mesh.peer(id, true);
    } else {
      await this._sfu.start(gen);
    }
  }

  _subscribeRoom() {
    const sub = this._sb.subscribe(this.name);
    sub.on('publication', (p) => this._onRoomPub(p));
    sub.on('join', (e) => this._addPerson(e));
    sub.on('leave', (e) => this._removePerson(e.client));
    // A resume may have missed joins and leaves: ask again.
    sub.on('subscribed', () => {
      if (this.state === 'joined') this._refreshPresence().catch((err) => this._error(err));
    });
    sub.on('error', (err) => this._error(err));
    sub.on('unsubscribed', (e) => this._error(new SwitchboardError(e.code || 0, `removed from ${this.name}: ${e.reason}`)));
    return sub;
  }

  _onRoomPub(p) {
    const d = p.data;
    // Recording events (docs/recording.md), in either mode.
    if (d && typeof d === 'object' && d.recording && typeof d.recording === 'object') this._emit('recording', d.recording);
    if (this.mode !== 'sfu' || !d || typeof d !== 'object' || !d.sfu || !Array.isArray(d.sfu.tracks)) return;
    this._sfu.setTracks(d.sfu.tracks, d.sfu.audio_mix === true);
  }

  _teardownMedia() {
    this._mesh.closeAll(false);
    this._sfu.teardown();
  }

  // --- participants -------------------------------------------------------------------------

  async _refreshPresence() {
    const res = await this._sb.presence(this.name);
    const now = new Map();
    for (const [id, info] of Object.entries((res && res.clients) || {})) {
      now.set(id, { client: id, user: info && info.user, name: info && info.name });
    }
    let changed = false;
    for (const id of [...this._people.keys()]) if (!now.has(id)) changed = this._removePerson(id, true) || changed;
    for (const p of now.values()) changed = this._addPerson(p, true) || changed;
    if (changed) this._emit('participants', this.participants());
  }

  _addPerson(e, quiet) {
    const id = e.client;
    if (!id || this._pastIds.has(id) || this.state === 'left') return false;
    this._mesh.keep(id); // back within the grace: the call goes on
    const known = this._people.has(id);
    const p = { client: id, user: e.user ?? null, name: e.name ?? null };
    this._people.set(id, p);
    if (known) return false;
    if (id !== this.clientId) this._emit('join', p);
    if (!quiet) this._emit('participants', this.participants());
    return true;
  }

  _removePerson(id, quiet) {
    this._mesh.orphan(id);
    const p = this._people.get(id);
    if (!p) return false;
    this._people.delete(id);
    if (id !== this.clientId) this._emit('leave', p);
    if (!quiet) this._emit('participants', this.participants());
    return true;
  }

  _participant(id, name) {
    return this._people.get(id) || { client: id, user: null, name: name ?? null };
  }

  // --- local media --------------------------------------------------------------------------

  _publish(e) {
    if (e.label !== 'screen' && this._muted[e.track.kind]) e.track.enabled = false;
    this._local.push(e);
    this._mesh.addLocal(e);
    this._sfu.publish(e);
  }

  _unpublish(e) {
    this._local = this._local.filter((x) => x !== e);
    this._mesh.removeLocal(e);
    this._sfu.unpublish(e);
  }

  _replace(e, track) {
    const old = e.track;
    e.track = track;
    if (e.label !== 'screen' && this._muted[track.kind]) track.enabled = false;
    const senders = this._mesh.sendersOf(old);
    const sfuSender = this._sfu.senderOf(e);
    if (sfuSender) senders.push(sfuSender);
    for (const s of senders) s.replaceTrack(track).catch((err) => this._error(err));
  }

  _pcConfig() {
    return { iceServers: this._iceServers, iceTransportPolicy: this._icePolicy, bundlePolicy: 'max-bundle' };
  }

  // --- remote tracks ------------------------------------------------------------------------

  _addRemote(info) {
    this._remote.set(info.trackId, info);
    const { pc, ...event } = info;
    this._emit('track', event);
  }

  _trackEnded(trackId) {
    const info = this._remote.get(trackId);
    if (!info) return;
    this._remote.delete(trackId);
    this._bitrates.delete(trackId);
    this._emit('trackended', { participant: info.participant, trackId, kind: info.kind, label: info.label });
  }

  _endTracksOf(pc) {
    for (const [trackId, info] of [...this._remote]) if (info.pc === pc) this._trackEnded(trackId);
  }

  _remoteFor(pc, s) {
    for (const i of this._remote.values()) {
      if (i.pc === pc && ((s.mid != null && i.mid === s.mid) || (s.trackIdentifier && s.trackIdentifier === i.track.id))) return i;
    }
    return null;
  }

  _trackStats(info, s) {
    const prev = this._bitrates.get(info.trackId);
    const bytes = s.bytesReceived || 0;
    const at = s.timestamp || Date.now();
    let bitrate = prev ? prev.bitrate : 0;
    if (prev && at > prev.at && bytes >= prev.bytes) bitrate = Math.round(((bytes - prev.bytes) * 8000) / (at - prev.at));
    this._bitrates.set(info.trackId, { bytes, at, bitrate });
    return {
      trackId: info.trackId,
      participant: info.participant,
      kind: info.kind,
      label: info.label,
      mid: info.mid,
      width: s.frameWidth ?? null,
      height: s.frameHeight ?? null,
      framesDecoded: s.framesDecoded ?? null,
      framesPerSecond: s.framesPerSecond ?? null,
      bitrate,
      bytesReceived: bytes,
      packetsLost: s.packetsLost ?? 0,
    };
  }

  /** Every failure ends here, once: the `error` event (or the console when nobody listens). */
  _error(err) {
    if (this.state === 'left') return;
    const e = err instanceof Error ? err : new SwitchboardError(0, String((err && err.message) || err));
    if (this._reported.has(e)) return;
    this._reported.add(e);
    const set = this._listeners.get('error');
    if (set && set.size) this._emit('error', e);
    else report(e);
  }
}
