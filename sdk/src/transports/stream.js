// HTTP streaming (`/stream`): one fetch with a streaming NDJSON body.

import { createLineSplitter } from '../codec.js';
import { errorFromResponse } from '../errors.js';
import { OneWayConn } from './oneway.js';

const noop = () => {};

export class StreamConn extends OneWayConn {
  start() {
    const c = this.client;
    if (!c._fetch || typeof AbortController === 'undefined') throw new Error('fetch is not available');
    this.abort = new AbortController();
    const query = c._oneWayQuery(this.channels, { name: true });
    c._fetch(c._url('/stream', query), {
      headers: { Accept: 'application/x-ndjson', ...c._authHeaders(this.token) },
      signal: this.abort.signal,
    }).then(async (res) => {
      if (this.closed) return;
      if (!res.ok) {
        const err = await errorFromResponse(res);
        c._lost(this, c._httpFailure(err));
        return;
      }
      if (!res.body || !res.body.getReader) throw new Error('response streaming is not available');
      const reader = res.body.getReader();
      const splitter = createLineSplitter((line) => {
        if (this.closed) return;
        let msg;
        try { msg = JSON.parse(line); } catch { return; }
        if (msg && typeof msg === 'object') c._push(this, msg);
      });
      for (;;) {
        const { done, value } = await reader.read();
        if (this.closed) {
          reader.cancel().catch(noop);
          return;
        }
        if (done) break;
        splitter.push(value);
      }
      splitter.end();
      c._lost(this, { code: 0, reason: 'stream ended' });
    }).catch((err) => {
      if (!this.closed) c._lost(this, { code: 0, reason: (err && err.message) || 'stream failed' });
    });
  }

  close() {
    super.close();
    if (this.abort) this.abort.abort();
  }
}
