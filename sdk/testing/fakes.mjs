// Test doubles for the SDK: a fake clock, WebSocket, EventSource and fetch, all driven by the test
// (the WebRTC ones are in rtc.mjs).
// Lives outside test/ so that `node --test sdk/test/` does not load it as a test file.

import { Switchboard, encodeCursor } from '../switchboard.js';

/** Lets pending promise chains settle (no time passes on the fake clock). */
export async function settle(turns = 8) {
  for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
}

/** Fake timers: `advance(ms)` runs what falls due, in order, letting promises settle between. */
export class FakeClock {
  constructor() {
    this.now = 0;
    this.timers = new Map();
    this.nextId = 1;
    this.setTimeout = (fn, ms) => {
      const id = this.nextId++;
      this.timers.set(id, { at: this.now + Math.max(0, Number(ms) || 0), fn, ms });
      return id;
    };
    this.clearTimeout = (id) => { this.timers.delete(id); };
  }

  /** Delays (ms, as asked) of the timers still pending. */
  pending() {
    return [...this.timers.values()].map((t) => t.ms);
  }

  async advance(ms) {
    const target = this.now + ms;
    await settle();
    for (;;) {
      let next = null;
      for (const [id, t] of this.timers) {
        if (t.at <= target && (!next || t.at < next[1].at || (t.at === next[1].at && id < next[0]))) next = [id, t];
      }
      if (!next) break;
      this.timers.delete(next[0]);
      this.now = next[1].at;
      next[1].fn();
      await settle();
    }
    this.now = target;
  }
}

/** A WebSocket class whose instances the test plays the server for. */
export function fakeWebSocket() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url, protocol) {
      this.url = url;
      this.protocol = protocol;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      sockets.push(this);
    }

    send(data) {
      if (this.readyState !== 1) throw new Error('not open');
      this.sent.push(data);
    }

    close(code) {
      this.closedWith = code ?? 1005;
      this.readyState = 3;
    }

    // --- the server's side ---
    accept() {
      this.readyState = 1;
      this.onopen && this.onopen({});
    }

    receive(msg) {
      this.onmessage && this.onmessage({ data: typeof msg === 'string' ? msg : JSON.stringify(msg) });
    }

    receiveBinary(header, payload) {
      const h = new TextEncoder().encode(`${JSON.stringify(header)}\n`);
      const frame = new Uint8Array(h.length + payload.length);
      frame.set(h);
      frame.set(payload, h.length);
      this.onmessage && this.onmessage({ data: frame.buffer });
    }

    serverClose(code, reason = '') {
      this.readyState = 3;
      this.onclose && this.onclose({ code, reason });
    }

    /** Text frames the client sent, parsed. */
    frames() {
      return this.sent.filter((d) => typeof d === 'string').map((d) => JSON.parse(d));
    }

    /** Client commands named `cmd`. */
    commands(cmd) {
      return this.frames().filter((f) => f.id && cmd in f);
    }

    reply(cmd, body, index = -1) {
      const all = this.commands(cmd);
      const c = all.at(index);
      if (!c) throw new Error(`no ${cmd} command sent`);
      this.receive({ id: c.id, [cmd]: body });
      return c;
    }

    /** Accepts the connection and answers `connect`. */
    handshake({ client = 'c1', ping = 25, session, expires } = {}) {
      this.accept();
      const extra = { ...(session ? { session } : {}), ...(expires ? { expires } : {}) };
      return this.reply('connect', { client, version: 'test', ping, ...extra });
    }
  }
  return { FakeWebSocket, sockets };
}

/** An EventSource class whose instances the test plays the server for. */
export function fakeEventSource() {
  const sources = [];
  class FakeEventSource {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.closed = false;
      this.listeners = new Map();
      sources.push(this);
    }

    addEventListener(type, fn) {
      if (!this.listeners.has(type)) this.listeners.set(type, []);
      this.listeners.get(type).push(fn);
    }

    close() {
      this.closed = true;
      this.readyState = 2;
    }

    // --- the server's side ---
    emit(type, data, id = '') {
      this.readyState = 1;
      for (const fn of this.listeners.get(type) || []) fn({ type, data: JSON.stringify(data), lastEventId: id });
    }

    fail() {
      this.onerror && this.onerror({});
    }

    /** Parsed query: channels, since (decoded by the caller), name, token. */
    query() {
      return new URL(this.url).searchParams;
    }
  }
  return { FakeEventSource, sources };
}

/** A fetch whose requests wait until the test answers them. */
export function fakeFetch() {
  const requests = [];
  const fetch = (url, init = {}) => new Promise((resolve, reject) => {
    const req = {
      url,
      init,
      method: init.method || 'GET',
      headers: init.headers || {},
      body: init.body,
      aborted: false,
      json: () => JSON.parse(init.body),
      query: () => new URL(url).searchParams,
      /** Answers `body`: a string as it is (say its type in `headers`), anything else as JSON. */
      respond(status, body, headers = {}) {
        const text = body == null ? null : typeof body === 'string' ? body : JSON.stringify(body);
        resolve(new Response(text, { status, headers: { 'Content-Type': 'application/json', ...headers } }));
      },
      /** Answers with a streaming body; returns {write(text|bytes), end()}. */
      stream(status = 200) {
        let ctrl;
        const body = new ReadableStream({ start(c) { ctrl = c; } });
        resolve(new Response(body, { status, headers: { 'Content-Type': 'application/x-ndjson' } }));
        return {
          write: (chunk) => ctrl.enqueue(typeof chunk === 'string' ? new TextEncoder().encode(chunk) : chunk),
          end: () => ctrl.close(),
        };
      },
      fail(message = 'network error') { reject(new TypeError(message)); },
    };
    if (init.signal) {
      init.signal.addEventListener('abort', () => {
        req.aborted = true;
        reject(new DOMException('aborted', 'AbortError'));
      });
    }
    requests.push(req);
  });
  return { fetch, requests };
}

/** A client on fakes: {sb, clock, ws, es, http} (each fake exposes what the client opened). */
export function makeClient(opts = {}) {
  const clock = new FakeClock();
  const ws = fakeWebSocket();
  const es = fakeEventSource();
  const http = fakeFetch();
  const sb = new Switchboard({
    url: 'http://sb.test',
    WebSocket: ws.FakeWebSocket,
    EventSource: es.FakeEventSource,
    fetch: http.fetch,
    timers: clock,
    random: () => 0.5,
    ...opts,
  });
  const events = [];
  sb.on('state', (e) => events.push(`state:${e.state}`));
  sb.on('transport', (e) => events.push(`transport:${e.transport}`));
  sb.on('error', (e) => events.push(`error:${e.code}:${e.fatal}`));
  return { sb, clock, ws: ws.sockets, es: es.sources, http: http.requests, events };
}

/** Collects a subscription's events as compact records. */
export function record(sub) {
  const log = { pubs: [], subscribed: [], joins: [], leaves: [], errors: [], unsubscribed: [] };
  sub.on('publication', (p) => log.pubs.push(p));
  sub.on('subscribed', (e) => log.subscribed.push(e));
  sub.on('join', (e) => log.joins.push(e));
  sub.on('leave', (e) => log.leaves.push(e));
  sub.on('error', (e) => log.errors.push(e));
  sub.on('unsubscribed', (e) => log.unsubscribed.push(e));
  return log;
}

export const pub = (channel, offset, data = { n: offset }, epoch = 'E1') => ({ channel, offset, epoch, data });

export { encodeCursor };
