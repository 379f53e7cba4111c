// Short and long polling (`/poll`): a request per answer, positions carried in a cursor.

import { normalizePub, tryDecodeCursor } from '../codec.js';
import { errorFromResponse } from '../errors.js';
import { OneWayConn } from './oneway.js';

export class PollConn extends OneWayConn {
  constructor(client, name, token) {
    super(client, name, token);
    this.long = name === 'long-poll';
    // Every channel gets a `subscribed` event from the first response of this connection.
    this.unannounced = new Set(this.channels);
    this.first = true;
    this.timer = null;
  }

  start() {
    if (!this.client._fetch || typeof AbortController === 'undefined') throw new Error('fetch is not available');
    this._poll();
  }

  _poll() {
    const c = this.client;
    this.timer = null;
    if (this.closed) return;
    const query = c._oneWayQuery(this.channels, {});
    // The first request does not wait, so the connection learns where it stands at once.
    const wait = this.long && !this.first ? c._longPollWait : 0;
    if (wait) query.wait = wait;
    const abort = new AbortController();
    this.abort = abort;
    const limit = c._setTimeout(() => abort.abort(), wait * 1000 + c._timeoutMs);
    c._fetch(c._url('/poll', query), {
      headers: { Accept: 'application/json', ...c._authHeaders(this.token) },
      signal: abort.signal,
    }).then(async (res) => {
      let body = null;
      if (res.status !== 204 && res.ok) body = await res.json();
      c._clearTimeout(limit);
      if (this.closed) return;
      if (!res.ok) {
        c._lost(this, c._httpFailure(await errorFromResponse(res)));
        return;
      }
      this.first = false;
      c._opened(this);
      if (this.closed || this.reopenQueued) return;
      this._handle(body, res.headers.get('Switchboard-Cursor'));
      if (this.closed || this.reopenQueued) return;
      if ((body && body.more) || this.long) this._poll();
      else this.timer = c._setTimeout(() => this._poll(), c._pollIntervalMs);
    }).catch((err) => {
      c._clearTimeout(limit);
      if (!this.closed) c._lost(this, { code: 0, reason: (err && err.message) || 'poll failed' });
    });
  }

  /** One poll answer: say where each channel stands when that is news, then deliver in order. */
  _handle(body, headerCursor) {
    const c = this.client;
    const cursor = tryDecodeCursor((body && body.cursor) || headerCursor) || {};
    const pubs = ((body && body.publications) || []).map((p) => normalizePub(p));
    const unrecovered = new Set(body && body.recovered === false ? body.unrecovered || [] : []);
    for (const channel of this.channels) {
      const sub = c._subs.get(channel);
      if (!sub) continue;
      const mine = pubs.filter((p) => p.channel === channel);
      const first = mine[0];
      const pos = sub.position;
      const at = cursor[channel];
      let lost = unrecovered.has(channel);
      if (pos && !lost) {
        // Positions that jump without the publications in between were not honoured.
        const next = first || at;
        if (next && (next.epoch !== pos.epoch || (first ? first.offset > pos.offset + 1 : at.offset > pos.offset))) {
          lost = true;
        }
      }
      if (!lost && !this.unannounced.has(channel) && pos) continue;
      this.unannounced.delete(channel);
      const recovered = !lost && !!pos;
      const start = recovered ? pos : first ? { epoch: first.epoch, offset: first.offset - 1 } : at;
      if (!start) continue; // the server did not say; the next answer will
      sub._subscribed({ epoch: start.epoch, offset: start.offset, recovered, replayed: recovered ? mine.length : 0 });
    }
    for (const p of pubs) {
      const sub = c._subs.get(p.channel);
      if (sub) sub._publication(p);
    }
  }

  close() {
    super.close();
    if (this.timer != null) this.client._clearTimeout(this.timer);
    if (this.abort) this.abort.abort();
  }
}
