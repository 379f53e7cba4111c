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
