// The game's shared canvas: draws strokes, and when the local player holds the pen, turns
// pointer moves into stroke messages. A stroke message is
//   { r: round, s: strokeId, c: "#rrggbb", w: width, p: [x0, y0, x1, y1, ...] }
// with coordinates in 0..1000 on both axes; each message of a stroke starts with the last point
// of the previous one, so a lost datagram leaves a gap, not a wrong line. `{ clear: true, r }`
// (or the referee's `{ clear: true, round }`) wipes the canvas.
//
// Hooks: canvas.dataset.strokes counts the messages drawn since the last clear.

const FLUSH_MS = 40; // a batch of points per 40 ms: smooth enough, few messages
const MAX_POINTS = 60; // keeps a message well under one datagram (about 1,200 bytes)

export class Board {
  /** `send(msg)` publishes a stroke message; called only while `canDraw`. */
  constructor(canvas, send) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.send = send;
    this.canDraw = false;
    this.round = 0;
    this.color = '#1d2433';
    this.width = 6;
    this.count = 0;
    this._pending = null; // { s, c, w, p: [] } not yet sent
    this._last = null; // last point sent, to start the next message with
    this._timer = null;
    this.clear();
    canvas.addEventListener('pointerdown', (e) => this._down(e));
    canvas.addEventListener('pointermove', (e) => this._move(e));
    for (const ev of ['pointerup', 'pointercancel', 'pointerleave']) canvas.addEventListener(ev, () => this._up());
  }

  clear() {
    const { ctx, canvas } = this;
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    this.count = 0;
    this.canvas.dataset.strokes = '0';
  }

  /** Draws one stroke message (or clears on a clear marker). */
  apply(msg) {
    if (!msg || typeof msg !== 'object') return;
    if (msg.clear) {
      this.clear();
      return;
    }
    const p = Array.isArray(msg.p) ? msg.p : [];
    if (p.length < 2) return;
    const { ctx, canvas } = this;
    const sx = canvas.width / 1000;
    const sy = canvas.height / 1000;
    ctx.strokeStyle = /^#[0-9a-f]{6}$/i.test(msg.c) ? msg.c : '#1d2433';
    ctx.lineWidth = Math.min(Math.max(Number(msg.w) || 4, 1), 60);
    ctx.lineCap = ctx.lineJoin = 'round';
    ctx.beginPath();
    ctx.moveTo(p[0] * sx, p[1] * sy);
    if (p.length === 2) ctx.lineTo(p[0] * sx + 0.01, p[1] * sy); // a dot
    for (let i = 2; i + 1 < p.length; i += 2) ctx.lineTo(p[i] * sx, p[i + 1] * sy);
    ctx.stroke();
    this.count += 1;
    this.canvas.dataset.strokes = String(this.count);
  }

  /** The pen's point for a pointer event, in 0..1000. */
  _point(e) {
    const r = this.canvas.getBoundingClientRect();
    const x = Math.round(((e.clientX - r.left) / r.width) * 1000);
    const y = Math.round(((e.clientY - r.top) / r.height) * 1000);
    return [Math.min(Math.max(x, 0), 1000), Math.min(Math.max(y, 0), 1000)];
  }

  _down(e) {
    if (!this.canDraw) return;
    e.preventDefault();
    this.canvas.setPointerCapture?.(e.pointerId);
    const s = Math.random().toString(36).slice(2, 8);
    this._pending = { r: this.round, s, c: this.color, w: this.width, p: this._point(e) };
    this._last = null;
    this._timer = setInterval(() => this._flush(), FLUSH_MS);
  }

  _move(e) {
    if (!this._pending) return;
    const [x, y] = this._point(e);
    const p = this._pending.p;
    if (p.length >= 2 && p.at(-2) === x && p.at(-1) === y) return;
    p.push(x, y);
    if (p.length >= MAX_POINTS * 2) this._flush();
  }

  _up() {
    if (!this._pending) return;
    this._flush();
    clearInterval(this._timer);
    this._pending = null;
    this._last = null;
  }

  /** Sends what was drawn since the last message (and draws it here at once). */
  _flush() {
    const pending = this._pending;
    if (!pending || pending.p.length === 0) return;
    const p = this._last ? [...this._last, ...pending.p] : pending.p;
    const msg = { r: pending.r, s: pending.s, c: pending.c, w: pending.w, p };
    this.apply(msg);
    this.send(msg);
    this._last = p.slice(-2);
    pending.p = [];
  }

  /** Pen for the local player: `on` while they are the drawer of `round`. */
  setPen(on, round) {
    this.canDraw = on;
    this.round = round;
    this.canvas.dataset.pen = on ? 'on' : 'off';
    if (!on) this._up();
  }
}
