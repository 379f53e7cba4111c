// The players' video tiles: camera, name, score, transport and what they are doing (drawing,
// guessed, reconnecting, speaking). Tiles come from the call (participants, tracks) and from
// the referee's state (scores, transports); the state is the authority on who plays.

const LOCAL = 'me';

export class Tiles {
  constructor(root) {
    this.root = root;
    this.map = new Map(); // client id (or LOCAL before ours is known) → { el, video, score, transport }
    this._me = null;
  }

  set me(client) {
    this._me = client;
    const t = this.map.get(LOCAL);
    if (!t || !client) return;
    const twin = this.map.get(client); // made from the state before our id was known
    if (twin && twin !== t) twin.el.remove();
    this.map.delete(LOCAL);
    this.map.set(client, t);
    t.el.dataset.client = client;
  }

  get me() { return this._me; }

  tile(client, name) {
    let t = this.map.get(client);
    if (t) {
      if (name && !t.el.dataset.name) this._name(t, name);
      return t;
    }
    const el = document.createElement('figure');
    el.className = 'tile game-tile';
    el.dataset.client = client;
    el.dataset.video = 'off';
    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    video.muted = true; // sound plays through <audio>
    const initials = document.createElement('div');
    initials.className = 'initials';
    const cap = document.createElement('figcaption');
    const who = document.createElement('span');
    who.className = 'who';
    const score = document.createElement('span');
    score.className = 'score';
    score.textContent = '0';
    const transport = document.createElement('span');
    transport.className = 'badge transport';
    const role = document.createElement('span');
    role.className = 'badge role';
    cap.append(who, score);
    el.append(video, initials, role, transport, cap);
    this.root.append(el);
    t = { el, video, who, initials, score, transport, role };
    this.map.set(client, t);
    if (name) this._name(t, name);
    return t;
  }

  _name(t, name) {
    t.el.dataset.name = name;
    t.who.textContent = t.el.dataset.me !== undefined ? `${name} (you)` : name;
    t.initials.textContent = name.slice(0, 1).toUpperCase();
  }

  local(stream) {
    const t = this.tile(LOCAL);
    t.el.dataset.me = '';
    t.el.classList.add('mirror');
    t.video.srcObject = stream;
    t.el.dataset.video = stream && stream.getVideoTracks().length ? 'on' : 'off';
  }

  /** The call's participants: a tile each (names until the referee's state comes). */
  participants(list) {
    for (const p of list) if (p.client !== this._me) this.tile(p.client, p.name || p.user || 'guest');
  }

  track(e) {
    const t = this.tile(e.participant.client, e.participant.name);
    if (e.kind === 'audio') {
      t.el.querySelector('audio')?.remove();
      const audio = document.createElement('audio');
      audio.autoplay = true;
      audio.dataset.track = e.trackId;
      audio.srcObject = new MediaStream([e.track]);
      t.el.append(audio);
      return;
    }
    if (e.label !== 'camera') return; // the game shows cameras only
    t.el.dataset.track = e.trackId;
    t.el.dataset.video = 'on';
    t.video.srcObject = new MediaStream([e.track]);
  }

  trackEnded(e) {
    for (const t of this.map.values()) {
      t.el.querySelector(`audio[data-track="${CSS.escape(e.trackId)}"]`)?.remove();
      if (t.el.dataset.track !== e.trackId) continue;
      delete t.el.dataset.track;
      t.el.dataset.video = 'off';
      t.video.srcObject = null;
    }
  }

  speaking(clients) {
    const now = new Set(clients);
    for (const [client, t] of this.map) {
      const key = client === LOCAL ? this._me : client;
      if (now.has(key)) t.el.dataset.speaking = '';
      else delete t.el.dataset.speaking;
    }
  }

  /** The referee's players: scores, transports, roles; the best score first. */
  players(list, drawer, phase) {
    const playing = new Set(list.map((p) => p.client));
    for (const p of list) {
      const t = this.tile(p.client, p.name);
      this._name(t, p.name);
      t.el.dataset.score = String(p.score);
      t.score.textContent = String(p.score);
      t.el.dataset.transport = p.transport || '';
      t.transport.textContent = p.transport || '…';
      t.transport.title = `Connected with ${p.transport || 'an unknown transport'}`;
      const draws = phase === 'drawing' && p.client === drawer;
      toggle(t.el, 'drawer', draws);
      toggle(t.el, 'guessed', phase === 'drawing' && p.guessed);
      toggle(t.el, 'away', p.away);
      t.role.textContent = p.away ? 'reconnecting' : draws ? '✏ drawing' : phase === 'drawing' && p.guessed ? '✓ guessed' : '';
    }
    // Tiles of people in the call whom the referee has not seen yet stay; those it dropped go.
    for (const [client, t] of [...this.map]) {
      if (client === LOCAL || client === this._me || playing.has(client) || t.el.dataset.track) continue;
      if (t.el.dataset.score !== undefined) this.remove(client);
    }
    const order = [...list].sort((a, b) => b.score - a.score).map((p) => p.client);
    for (const client of order) {
      const t = this.map.get(client);
      if (t) this.root.append(t.el);
    }
  }

  remove(client) {
    const t = this.map.get(client);
    if (!t) return;
    t.video.srcObject = null;
    t.el.remove();
    this.map.delete(client);
  }

  reset() {
    for (const client of [...this.map.keys()]) this.remove(client);
    this._me = null;
  }
}

function toggle(el, name, on) {
  if (on) el.dataset[name] = '';
  else delete el.dataset[name];
}
