// WebRTC test doubles for the SDK: tracks, streams, data channels and an RTCPeerConnection that
// negotiates nothing (it only records what the SDK asks of it). Used by test/rooms.test.mjs.

let trackSeq = 0;

/** A MediaStreamTrack double. */
export class FakeTrack {
  constructor(kind, id = `mst${++trackSeq}`) {
    this.kind = kind;
    this.id = id;
    this.enabled = true;
  }
}
/** A MediaStream double holding `tracks`. */
export const fakeStream = (...tracks) => ({ id: `stream${++trackSeq}`, getTracks: () => tracks });

/** An RTCDataChannel double; the test plays the other end (`open`, `receive`, `reply`). */
export class FakeChannel {
  constructor(label, opts) {
    this.label = label;
    this.opts = opts;
    this.readyState = 'connecting';
    this.sent = [];
  }
  send(data) {
    if (this.readyState !== 'open') throw new Error('not open');
    this.sent.push(data);
  }
  close() { this.readyState = 'closed'; }
  // --- the server's side ---
  open() {
    this.readyState = 'open';
    this.onopen && this.onopen({});
  }
  receive(msg) { this.onmessage && this.onmessage({ data: typeof msg === 'string' ? msg : JSON.stringify(msg) }); }
  frames() { return this.sent.filter((d) => typeof d === 'string').map((d) => JSON.parse(d)); }
  reply(cmd, body) {
    const c = this.frames().filter((f) => f.id && cmd in f).at(-1);
    this.receive({ id: c.id, [cmd]: body });
    return c;
  }
}

/** RTCPeerConnection double: mids on setLocalDescription, JSEP-ish signaling states, no media. */
export function fakePeerConnection() {
  const pcs = [];
  class FakePC extends EventTarget {
    constructor(config) {
      super();
      this.config = config;
      this.transceivers = [];
      this.channels = [];
      this.candidates = [];
      this.signalingState = 'stable';
      this.iceGatheringState = 'complete';
      this.connectionState = 'new';
      this.localDescription = null;
      this.remoteDescription = null;
      this.closed = false;
      this.nextMid = 0;
      this.offers = 0;
      this.fresh = [];
      this.stats = [];
      pcs.push(this);
    }
    createDataChannel(label, opts) {
      const ch = new FakeChannel(label, opts);
      this.channels.push(ch);
      return ch;
    }
    addTransceiver(trackOrKind, init = {}) {
      const track = typeof trackOrKind === 'string' ? null : trackOrKind;
      const t = {
        mid: null,
        kind: track ? track.kind : trackOrKind,
        direction: init.direction ?? 'sendrecv',
        currentDirection: null,
        init,
        stopped: false,
        sender: { track, replaceTrack: async (nt) => { t.sender.track = nt; } },
        receiver: { track: new FakeTrack(track ? track.kind : trackOrKind) },
        stop() { this.stopped = true; },
      };
      this.transceivers.push(t);
      this._needed();
      return t;
    }
    addTrack(track) { return this.addTransceiver(track).sender; }
    removeTrack(sender) {
      sender.track = null;
      this._needed();
    }
    getTransceivers() { return this.transceivers; }
    getSenders() { return this.transceivers.map((t) => t.sender); }
    getReceivers() { return this.transceivers.map((t) => t.receiver); }
    _needed() {
      if (this.queued) return;
      this.queued = true;
      queueMicrotask(() => {
        this.queued = false;
        if (this.signalingState === 'stable' && !this.closed && this.onnegotiationneeded) this.onnegotiationneeded();
      });
    }
    async createOffer() { return { type: 'offer', sdp: `offer-${++this.offers}` }; }
    async setLocalDescription(d) {
      if (d && d.type === 'rollback') {
        for (const t of this.fresh) t.mid = null;
        this.signalingState = 'stable';
        return;
      }
      const type = d ? d.type : this.signalingState === 'have-remote-offer' ? 'answer' : 'offer';
      const sdp = d ? d.sdp : type === 'offer' ? `offer-${++this.offers}` : `answer-to-${this.remoteDescription.sdp}`;
      this.fresh = this.transceivers.filter((t) => t.mid == null && !t.stopped);
      for (const t of this.fresh) t.mid = String(this.nextMid++);
      this.localDescription = { type, sdp };
      this.signalingState = type === 'offer' ? 'have-local-offer' : 'stable';
    }
    async setRemoteDescription(d) {
      if (d.type === 'offer' && this.signalingState === 'have-local-offer') this.rolledBack = true; // implicit rollback
      this.remoteDescription = d;
      this.signalingState = d.type === 'offer' ? 'have-remote-offer' : 'stable';
    }
    async addIceCandidate(c) { this.candidates.push(c); }
    async getStats() { return new Map(this.stats); }
    restartIce() { this.restarted = true; }
    close() { this.closed = true; }
    // --- the network's side ---
    setConnectionState(s) {
      this.connectionState = s;
      this.onconnectionstatechange && this.onconnectionstatechange();
    }
  }
  return { FakePC, pcs };
}
