// Server-Sent Events (`/sse`): one EventSource for all subscriptions, the token in the URL.

import { OneWayConn } from './oneway.js';

export class SseConn extends OneWayConn {
  start() {
    const c = this.client;
    const ES = c._EventSource;
    if (!ES) throw new Error('EventSource is not available');
    const query = c._oneWayQuery(this.channels, { tokenInQuery: true, token: this.token, name: true });
    const es = new ES(c._url('/sse', query));
    this.es = es;
    const on = (type, wrap) => es.addEventListener(type, (ev) => {
      if (this.closed) return;
      let data;
      try { data = JSON.parse(ev.data); } catch { return; }
      c._push(this, wrap(data));
    });
    on('connected', (d) => ({ connected: d }));
    on('subscribed', (d) => ({ subscribed: d }));
    on('join', (d) => ({ join: d }));
    on('leave', (d) => ({ leave: d }));
    on('unsubscribed', (d) => ({ unsubscribed: d }));
    on('expiring', (d) => ({ expiring: d }));
    on('disconnect', (d) => ({ disconnect: d }));
    on('message', (d) => ({ pub: d }));
    // The SDK, not the browser, reconnects: then it always knows its positions and state.
    es.onerror = () => c._lost(this, { code: 0, reason: 'EventSource error' });
  }

  close() {
    super.close();
    if (this.es) {
      this.es.onerror = null;
      this.es.close();
    }
  }
}
