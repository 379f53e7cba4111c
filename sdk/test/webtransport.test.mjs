import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Switchboard } from '../switchboard.js';

test('webtransport: first in the default order only where the platform has WebTransport', () => {
  const base = { url: 'http://sb.test', WebSocket: null, EventSource: null, fetch: null };
  assert.equal(new Switchboard({ ...base, WebTransport: class {} }).transports[0], 'webtransport');
  const without = new Switchboard({ ...base, WebTransport: null }).transports;
  assert.equal(without[0], 'websocket');
  assert.ok(!without.includes('webtransport'));
  assert.deepEqual(new Switchboard({ ...base, WebTransport: null, transports: 'webtransport' }).transports, ['webtransport']);
});

test('webtransport: with no WebTransport the attempt fails at once and the next transport is tried', async () => {
  const opened = [];
  class FakeWS {
    constructor(url) { opened.push(url); this.readyState = 0; }
    close() {}
  }
  const sb = new Switchboard({
    url: 'http://sb.test', WebTransport: null, WebSocket: FakeWS, EventSource: null, fetch: null,
    transports: ['webtransport', 'websocket'],
    timers: { setTimeout: (fn) => { queueMicrotask(fn); return 1; }, clearTimeout: () => {} },
  });
  const errors = [];
  sb.on('error', (e) => errors.push(e.transport));
  sb.subscribe('news');
  sb.connect();
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(errors.slice(0, 1), ['webtransport']);
  assert.equal(opened[0], 'ws://sb.test/ws');
  sb.disconnect();
});
