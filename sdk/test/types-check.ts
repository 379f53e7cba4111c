// Compiled, never run (scripts/test: tsc -p sdk/tsconfig.json). It holds the JavaScript modules
// to switchboard.d.ts: the declared value exports are exactly the SDK's, functions and
// constructors have the declared shapes, and a typical app compiles against the declarations.
// (Classes are also checked member by member: each has `@implements` its declaration.)

import type * as Api from '../switchboard.js'; // resolves to switchboard.d.ts
import { Switchboard, type Publication, type Position } from '../switchboard.js';
import * as client from '../src/client.js';
import * as codec from '../src/codec.js';
import * as errors from '../src/errors.js';
import * as retry from '../src/retry.js';
import * as subscription from '../src/subscription.js';
import * as room from '../src/rooms/room.js';
import * as mesh from '../src/rooms/mesh.js';
import * as sfu from '../src/rooms/sfu.js';

// What apps construct and call, with the declared shapes.
const shapes: {
  Switchboard: typeof Api.Switchboard;
  SwitchboardError: new (code: number, message: string) => Api.SwitchboardError;
  backoffDelay: typeof Api.backoffDelay;
  bytesToBase64: typeof Api.bytesToBase64;
  base64ToBytes: typeof Api.base64ToBytes;
  encodeCursor: typeof Api.encodeCursor;
  decodeCursor: typeof Api.decodeCursor;
  createLineSplitter: typeof Api.createLineSplitter;
  inboxChannel: typeof Api.inboxChannel;
  isPolite: typeof Api.isPolite;
  planSubscriptions: typeof Api.planSubscriptions;
} = {
  Switchboard: client.Switchboard,
  SwitchboardError: errors.SwitchboardError,
  backoffDelay: retry.backoffDelay,
  bytesToBase64: codec.bytesToBase64,
  base64ToBytes: codec.base64ToBytes,
  encodeCursor: codec.encodeCursor,
  decodeCursor: codec.decodeCursor,
  createLineSplitter: codec.createLineSplitter,
  inboxChannel: mesh.inboxChannel,
  isPolite: mesh.isPolite,
  planSubscriptions: sfu.planSubscriptions,
};

// Every declared value export, and no other (sdk/test/exports.test.mjs holds the entry to this list).
export const implementations: Record<keyof typeof Api, unknown> = {
  ...shapes,
  Subscription: subscription.Subscription, // apps get these from the client: their members are
  Room: room.Room, // checked through `@implements`
};

// A typical app, against the declarations.
export async function app(media: MediaStream): Promise<void> {
  const sb = new Switchboard({ name: 'alice', transports: ['websocket', 'sse'], backoff: { maxMs: 5000 } });
  sb.on('state', (e) => console.log(e.state, e.previous, e.code));
  const sub = sb.subscribe('chat:lobby', { since: { epoch: 'E', offset: 3 } });
  sub.on('publication', (p: Publication) => console.log(p.channel, p.offset, p.binary ? 'bytes' : p.data));
  sub.on('subscribed', (e) => { if (!e.recovered) console.log('reload', e.replayed); });
  sb.connect();
  const at: Position | null = await sb.publish('chat:lobby', { text: 'hi' }, { idempotencyKey: 'k1' });
  console.log(at?.offset, (await sb.history('chat:lobby', { limit: 10, reverse: true })).publications.length);
  const order = await sb.rpc<{ id: number }>('orders.create', { sku: 7 });
  console.log(order.id, await sb.rpc('ping'));
  const call = sb.room('room:standup', { mode: 'sfu', media, simulcast: true });
  call.on('track', ({ participant, stream, label, trackId }) => console.log(participant.client, stream, label, trackId));
  await call.join();
  call.setMuted('audio', true);
  await call.leave();
}
