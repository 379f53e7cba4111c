// WebRTC in the SDK without a browser: the data channel transport, room naming, perfect
// negotiation roles, SFU track-list planning, and the mesh/SFU signaling flows on the fake
// RTCPeerConnection of testing/rtc.mjs (it negotiates nothing: it records what the SDK asks of it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Switchboard, inboxChannel, isPolite, planSubscriptions } from '../switchboard.js';
import { FakeClock, fakeFetch, makeClient, settle } from '../testing/fakes.mjs';
import { FakeTrack, fakePeerConnection, fakeStream } from '../testing/rtc.mjs';

async function until(fn, what = 'condition') {
  for (let i = 0; i < 100; i++) {
    const v = fn();
    if (v) return v;
    await settle(2);
  }
  throw new Error(`timed out waiting for ${what}`);
}

const request = (http, method, re) => until(() => http.find((r) => r.method === method && re.test(r.url) && !r.done), `${method} ${re}`)
  .then((r) => { r.done = true; return r; });

/** Answers the WebSocket `subscribe` of `channel`. */
async function replySubscribe(sock, channel) {
  const c = await until(() => sock.commands('subscribe').find((f) => f.subscribe.channel === channel), `subscribe ${channel}`);
  sock.receive({ id: c.id, subscribe: { channel, epoch: 'E', offset: 0, recovered: false, replayed: 0 } });
}

/**
 * A client joining a room as `me` with `people` in its presence, every request on the way
 * answered (the SFU's POST excepted). `joined` resolves when the join does.
 */
function startRoom(me, people, { mode, media, simulcast, token, name = 'room:lobby' }) {
  const rtc = fakePeerConnection();
  const c = makeClient({ transports: 'websocket', RTCPeerConnection: rtc.FakePC, token });
  const room = c.sb.room(name, { mode, media, simulcast });
  const log = roomLog(room);
  const joining = room.join();
  const joined = (async () => {
    await until(() => c.ws[0]);
    const sock = c.ws[0];
    sock.handshake({ client: me });
    (await request(c.http, 'GET', /\/api\/ice-servers$/)).respond(200, { iceServers: [{ urls: ['stun:s'] }] });
    await replySubscribe(sock, `${name}@${me}`);
    await replySubscribe(sock, name);
    const p = await until(() => sock.commands('presence')[0]);
    sock.receive({ id: p.id, presence: { clients: Object.fromEntries(people.map((id) => [id, { user: `u-${id}`, name: id }])) } });
    return joining;
  })();
  return { ...c, room, log, pcs: rtc.pcs, get sock() { return c.ws[0]; }, joined };
}

let pubOffset = 0;
const deliver = (sock, channel, data, from) => sock.receive({
  pub: { channel, offset: ++pubOffset, epoch: 'E', data, ...(from ? { info: { client: from, user: `u-${from}` } } : {}) },
});

function roomLog(room) {
  const log = [];
  room.on('track', (e) => log.push(`track:${e.participant.client}:${e.label}:${e.trackId}`));
  room.on('trackended', (e) => log.push(`ended:${e.participant.client}:${e.trackId}`));
  room.on('join', (e) => log.push(`join:${e.client}`));
  room.on('leave', (e) => log.push(`leave:${e.client}`));
  room.on('error', (e) => log.push(`error:${e.message}`));
  return log;
}

// --- pure helpers ------------------------------------------------------------------------------

test('transports: webrtc is accepted when asked for, never in a default order', () => {
  const base = { url: 'http://sb.test', WebSocket: null, EventSource: null, fetch: null };
  assert.deepEqual(new Switchboard({ ...base, transports: ['webrtc', 'websocket'] }).transports, ['webrtc', 'websocket']);
  assert.deepEqual(new Switchboard({ ...base, transports: 'webrtc' }).transports, ['webrtc']);
  assert.ok(!new Switchboard({ ...base, WebTransport: class {} }).transports.includes('webrtc'));
  assert.ok(!new Switchboard({ ...base, WebTransport: null }).transports.includes('webrtc'));
  assert.throws(() => new Switchboard({ ...base, transports: ['webrtc', 'carrier-pigeon'] }), /unknown transport/);
});

test('rooms: inbox channel names, and room names refused', () => {
  assert.equal(inboxChannel('room:lobby', 'c7f0'), 'room:lobby@c7f0');
  const sb = new Switchboard({ url: 'http://sb.test', WebSocket: null, EventSource: null, fetch: null });
  assert.equal(sb.room('room:lobby').mode, 'mesh');
  assert.equal(sb.room('room:lobby', { mode: 'sfu' }).name, 'room:lobby');
  assert.throws(() => sb.room('room:a@b'), TypeError);
  assert.throws(() => sb.room(''), TypeError);
  assert.throws(() => sb.room('room:a', { mode: 'p2p' }), TypeError);
});

test('perfect negotiation: of any two peers exactly one is polite, the lower id', () => {
  assert.equal(isPolite('a1', 'b2'), true);
  assert.equal(isPolite('b2', 'a1'), false);
  const ids = ['Zq', 'a', 'A', '0f', '10', '9'];
  for (const x of ids) for (const y of ids) if (x !== y) assert.notEqual(isPolite(x, y), isPolite(y, x), `${x} ${y}`);
});

test('planSubscriptions: own tracks skipped, free m-lines reused by kind, new ones for the rest', () => {
  const tracks = [
    { id: 'V1', participant: 'bob', kind: 'video' },
    { id: 'A1', participant: 'bob', kind: 'audio' },
    { id: 'V2', participant: 'carol', kind: 'video' },
    { id: 'MINE', participant: 'me', kind: 'video' },
    { id: 'OLD', participant: 'me-before', kind: 'audio' },
    { id: 'X', participant: 'bob', kind: 'data' },
    { id: 'server-composition-7', participant: 'server', kind: 'video' },
  ];
  const receivers = [{ mid: '0', kind: 'audio', trackId: null }, { mid: '1', kind: 'video', trackId: null }];
  const plan = planSubscriptions(receivers, tracks, ['me', 'me-before']);
  assert.deepEqual(plan.release, []);
  assert.deepEqual(plan.assign.map((a) => [a.mid, a.track.id]), [['1', 'V1'], ['0', 'A1']]);
  assert.deepEqual(plan.create.map((t) => t.id), ['V2']);
  assert.deepEqual(planSubscriptions([], [], 'me'), { release: [], assign: [], create: [] });
});

test('planSubscriptions: held tracks stay, vanished ones are released and their m-line reused', () => {
  const receivers = [
    { mid: '2', kind: 'video', trackId: 'V1' },
    { mid: '3', kind: 'video', trackId: 'GONE' },
    { mid: '4', kind: 'audio', trackId: 'A-GONE' },
  ];
  const tracks = [{ id: 'V1', participant: 'bob', kind: 'video' }, { id: 'V9', participant: 'dan', kind: 'video' }];
  const plan = planSubscriptions(receivers, tracks, 'me');
  assert.deepEqual(plan.release, [{ mid: '3', trackId: 'GONE' }, { mid: '4', trackId: 'A-GONE' }]);
  assert.deepEqual(plan.assign.map((a) => [a.mid, a.track.id]), [['3', 'V9']]);
  assert.deepEqual(plan.create, []);
  // The same track on two m-lines (should not happen): the second is released.
  const dup = planSubscriptions([{ mid: '0', kind: 'video', trackId: 'V1' }, { mid: '1', kind: 'video', trackId: 'V1' }], tracks.slice(0, 1), 'me');
  assert.deepEqual(dup.release, [{ mid: '1', trackId: 'V1' }]);
});

// --- data channel transport ----------------------------------------------------------------------

function dcClient(opts = {}) {
  const clock = new FakeClock();
  const http = fakeFetch();
  const rtc = fakePeerConnection();
  const sb = new Switchboard({
    url: 'http://sb.test', transports: 'webrtc', RTCPeerConnection: rtc.FakePC, fetch: http.fetch,
    WebSocket: null, EventSource: null, timers: clock, random: () => 0.5, ...opts,
  });
  const events = [];
  sb.on('state', (e) => events.push(`state:${e.state}`));
  sb.on('error', (e) => events.push(`error:${e.code}:${e.fatal}`));
  return { sb, clock, http: http.requests, pcs: rtc.pcs, events };
}

/** Opens the data channel transport: ICE servers, offer, answer, channel open, connect. */
async function openDc({ http, pcs }, { client = 'c1', iceStatus = 200 } = {}) {
  (await request(http, 'GET', /\/api\/ice-servers$/)).respond(iceStatus, iceStatus === 200 ? { iceServers: [{ urls: ['stun:x'] }] } : { error: { code: 108, message: 'off' } });
  const post = await request(http, 'POST', /\/rtc\/dc$/);
  post.respond(201, 'v=0 answer', { 'Content-Type': 'application/sdp' });
  const pc = pcs.at(-1);
  await until(() => pc.remoteDescription, 'answer applied');
  const [dc, udc] = pc.channels;
  dc.open();
  dc.reply('connect', { client, version: 't', ping: 25 });
  return { pc, dc, udc, post };
}

test('webrtc: offer POSTed as application/sdp, answer applied, the WebSocket protocol on `switchboard`', async () => {
  const c = dcClient({ token: 'T0K', name: 'al' });
  const sub = c.sb.subscribe('cursors:room', { datagram: true });
  const got = [];
  sub.on('publication', (p) => got.push(p.data));
  c.sb.connect();
  const ice = await request(c.http, 'GET', /\/api\/ice-servers$/);
  assert.equal(ice.headers.Authorization, 'Bearer T0K');
  ice.respond(200, { iceServers: [{ urls: ['stun:x'] }], ttl: 60 });
  const post = await request(c.http, 'POST', /\/rtc\/dc$/);
  const pc = c.pcs[0];
  assert.deepEqual(pc.config.iceServers, [{ urls: ['stun:x'] }]);
  assert.deepEqual(pc.channels.map((ch) => [ch.label, ch.opts]), [
    ['switchboard', undefined],
    ['switchboard-unreliable', { ordered: false, maxRetransmits: 0 }],
  ]);
  assert.equal(post.headers['Content-Type'], 'application/sdp');
  assert.equal(post.body, pc.localDescription.sdp);
  post.respond(201, 'v=0 answer', { 'Content-Type': 'application/sdp' });
  await until(() => pc.remoteDescription);
  assert.deepEqual(pc.remoteDescription, { type: 'answer', sdp: 'v=0 answer' });
  const [dc, udc] = pc.channels;
  assert.equal(dc.sent.length, 0);
  dc.open();
  assert.deepEqual(dc.frames()[0].connect, { token: 'T0K', name: 'al' });
  dc.reply('connect', { client: 'cid', version: 't', ping: 25 });
  assert.equal(c.sb.state, 'connected');
  assert.equal(c.sb.transport, 'webrtc');
  assert.equal(c.sb.clientId, 'cid');
  const s = dc.frames().find((f) => f.subscribe);
  assert.deepEqual(s.subscribe, { channel: 'cursors:room', datagram: true });
  dc.reply('subscribe', { channel: 'cursors:room', epoch: 'E', offset: 0, recovered: false, replayed: 0 });
  // Datagram subscriptions arrive on the unreliable channel; both feed the same handler.
  udc.receive({ pub: { channel: 'cursors:room', offset: 1, epoch: 'E', data: { x: 1 } } });
  dc.receive({ pub: { channel: 'cursors:room', offset: 2, epoch: 'E', data: { x: 2 } } });
  assert.deepEqual(got, [{ x: 1 }, { x: 2 }]);
  // Commands go over the reliable channel.
  const done = c.sb.publish('cursors:room', { x: 3 }, { datagram: true });
  dc.reply('publish', { epoch: 'E', offset: 3 });
  assert.deepEqual(await done, { epoch: 'E', offset: 3 });
  assert.deepEqual(c.events, ['state:connecting', 'state:connected']);
});

test('webrtc: {"disconnect"} 3000 reconnects and resumes; 3501 stops', async () => {
  const c = dcClient();
  c.sb.subscribe('news');
  c.sb.connect();
  const first = await openDc(c);
  first.dc.reply('subscribe', { channel: 'news', epoch: 'E', offset: 4, recovered: false, replayed: 0 });
  first.dc.receive({ disconnect: { code: 3000, reason: 'shutdown' } });
  assert.equal(c.sb.state, 'connecting');
  assert.equal(first.pc.closed, true);
  await c.clock.advance(1000);
  const second = await openDc(c, { client: 'c2', iceStatus: 503 });
  assert.deepEqual(second.pc.config.iceServers, [], 'no ICE servers when the server has none');
  assert.deepEqual(second.dc.frames().find((f) => f.subscribe).subscribe, { channel: 'news', since: { epoch: 'E', offset: 4 } });
  second.dc.receive({ disconnect: { code: 3501, reason: 'unauthorized' } });
  assert.equal(c.sb.state, 'closed');
  assert.deepEqual(c.events.slice(-1), ['error:3501:true']);
});

test('webrtc: a failed peer connection or a closed channel is a lost connection', async () => {
  const c = dcClient();
  c.sb.connect();
  const first = await openDc(c);
  first.pc.setConnectionState('failed');
  assert.equal(c.sb.state, 'connecting');
  await c.clock.advance(1000);
  const second = await openDc(c, { client: 'c2' });
  assert.equal(c.sb.state, 'connected');
  second.dc.readyState = 'closed';
  second.dc.onclose();
  assert.equal(c.sb.state, 'connecting');
});

test('webrtc: an HTTP error on /rtc/dc hands over to the next transport', async () => {
  const opened = [];
  const EventSource = class { constructor(url) { opened.push(url); } addEventListener() {} close() {} };
  const c = dcClient({ transports: ['webrtc', 'sse'], EventSource });
  c.sb.subscribe('news');
  c.sb.connect();
  (await request(c.http, 'GET', /\/api\/ice-servers$/)).respond(200, { iceServers: [] });
  (await request(c.http, 'POST', /\/rtc\/dc$/)).respond(503, { error: { code: 108, message: 'WebRTC is off' } });
  await until(() => c.events.includes('error:108:false'));
  assert.equal(c.pcs[0].closed, true);
  await c.clock.advance(0);
  assert.match(opened[0], /^http:\/\/sb\.test\/sse\?channel=news/);
});

// --- rooms: SFU ----------------------------------------------------------------------------------

test('sfu: publish with simulcast, subscribe to others\' tracks, reuse free m-lines, layers, stats, leave', async () => {
  const mic = new FakeTrack('audio');
  const cam = new FakeTrack('video');
  const m = startRoom('me', ['me', 'bob'], { mode: 'sfu', media: fakeStream(mic, cam), simulcast: true, token: 'T0K' });
  const { http, room: room2, log: log2 } = m;
  const ws = m.ws;
  const post = await request(http, 'POST', /\/rtc\/sfu\//);
  const pc = m.pcs[0];
  assert.equal(post.url, 'http://sb.test/rtc/sfu/room%3Alobby');
  assert.equal(post.headers.Authorization, 'Bearer T0K');
  assert.deepEqual(post.json(), { client: 'me', sdp: 'offer-1', publish: { 0: 'mic', 1: 'camera' }, subscribe: {} });
  assert.deepEqual(pc.transceivers.map((t) => [t.mid, t.init.direction]), [['0', 'sendonly'], ['1', 'sendonly']]);
  assert.equal(pc.transceivers[0].init.sendEncodings, undefined, 'no simulcast for audio');
  assert.deepEqual(pc.transceivers[1].init.sendEncodings, [
    { rid: 'q', scaleResolutionDownBy: 4 }, { rid: 'h', scaleResolutionDownBy: 2 }, { rid: 'f', scaleResolutionDownBy: 1 },
  ]);
  post.respond(201, {
    peer: 'P1', sdp: 'answer-1',
    tracks: [
      { id: 'T1', participant: 'bob', name: 'Bob', kind: 'video', label: 'camera', layers: ['q', 'h', 'f'] },
      { id: 'T0', participant: 'me', kind: 'video', label: 'camera', layers: [] },
    ],
  }, { Location: '/rtc/peers/P1' });
  await m.joined;
  assert.equal(room2.state, 'joined');
  assert.deepEqual(room2.participants().map((p) => p.client), ['me', 'bob']);
  // T1 needs a receive m-line: a renegotiation.
  const p1 = await request(http, 'PATCH', /\/rtc\/peers\/P1$/);
  assert.deepEqual(p1.json(), { subscribe: { 2: 'T1' }, sdp: 'offer-2' });
  assert.equal(pc.transceivers[2].init.direction, 'recvonly');
  p1.respond(200, { sdp: 'answer-2' });
  await until(() => log2.includes(`track:bob:camera:T1`));
  assert.deepEqual(pc.remoteDescription, { type: 'answer', sdp: 'answer-2' });

  // T1 goes, an audio track comes: the video m-line is freed, the audio one is new.
  deliver(ws[0], 'room:lobby', { sfu: { tracks: [{ id: 'T2', participant: 'bob', kind: 'audio', label: 'mic' }] } });
  const p2 = await request(http, 'PATCH', /\/rtc\/peers\/P1$/);
  assert.deepEqual(p2.json(), { subscribe: { 2: null, 3: 'T2' }, sdp: 'offer-3' });
  p2.respond(200, { sdp: 'answer-3' });
  await until(() => log2.includes('track:bob:mic:T2'));
  assert.ok(log2.includes('ended:bob:T1'));

  // A new video track reuses the free m-line: no SDP.
  deliver(ws[0], 'room:lobby', { sfu: { tracks: [
    { id: 'T2', participant: 'bob', kind: 'audio', label: 'mic' },
    { id: 'T3', participant: 'carol', name: 'Carol', kind: 'video', label: 'screen', layers: ['q', 'f'] },
  ] } });
  const p3 = await request(http, 'PATCH', /\/rtc\/peers\/P1$/);
  assert.deepEqual(p3.json(), { subscribe: { 2: 'T3' } });
  p3.respond(200, {});
  await until(() => log2.includes('track:carol:screen:T3'));

  const layer = room2.setLayer('T3', 'q');
  const p4 = await request(http, 'PATCH', /\/rtc\/peers\/P1$/);
  assert.deepEqual(p4.json(), { layers: { 2: 'q' } });
  p4.respond(200, {});
  await layer;

  pc.stats = [['in2', { type: 'inbound-rtp', mid: '2', kind: 'video', frameWidth: 320, frameHeight: 180, framesDecoded: 30, bytesReceived: 1000, timestamp: 1000 }]];
  await room2.stats();
  pc.stats[0][1] = { ...pc.stats[0][1], framesDecoded: 60, bytesReceived: 126000, timestamp: 2000 };
  const [st] = await room2.stats();
  assert.deepEqual(
    { trackId: st.trackId, who: st.participant.client, w: st.width, h: st.height, f: st.framesDecoded, bitrate: st.bitrate },
    { trackId: 'T3', who: 'carol', w: 320, h: 180, f: 60, bitrate: 1000000 },
  );

  // Screen share: a sendonly transceiver and a renegotiation with its label.
  const screen = new FakeTrack('video');
  room2.addTrack(screen, 'screen');
  const p5 = await request(http, 'PATCH', /\/rtc\/peers\/P1$/);
  assert.deepEqual(p5.json(), { sdp: 'offer-4', publish: { 4: 'screen' } });
  p5.respond(200, { sdp: 'answer-4' });
  await settle();

  room2.setMuted('video', true);
  assert.equal(cam.enabled, false);
  assert.equal(screen.enabled, true, 'mute leaves screen shares alone');

  const left = room2.leave();
  const del = await request(http, 'DELETE', /\/rtc\/peers\/P1$/);
  del.respond(204, null);
  await left;
  assert.equal(pc.closed, true);
  const unsubs = ws[0].commands('unsubscribe').map((c) => c.unsubscribe.channel);
  assert.ok(unsubs.includes('room:lobby') && unsubs.includes('room:lobby@me'));
  assert.ok(log2.includes('ended:carol:T3') && log2.includes('ended:bob:T2'));
  assert.ok(!log2.some((l) => l.startsWith('error')), log2.join(' '));
});

test('sfu: in a cluster the SDK posts to the node that serves the room (111) and keeps using its URLs', async () => {
  const m = startRoom('me', ['me'], { mode: 'sfu', media: fakeStream(new FakeTrack('audio')) });
  const first = await request(m.http, 'POST', /\/rtc\/sfu\//);
  first.respond(421, { error: { code: 111, message: 'room:lobby is served by http://n2.test' }, node: 'http://n2.test/' });
  const second = await request(m.http, 'POST', /^http:\/\/n2\.test\/rtc\/sfu\//);
  assert.equal(second.url, 'http://n2.test/rtc/sfu/room%3Alobby');
  assert.deepEqual(second.json(), first.json(), 'the same offer');
  second.respond(201, { peer: 'P9', sdp: 'answer-1', tracks: [], url: 'http://n2.test/rtc/peers/P9' });
  await m.joined;
  const left = m.room.leave();
  const del = await request(m.http, 'DELETE', /\/rtc\/peers\/P9$/);
  assert.equal(del.url, 'http://n2.test/rtc/peers/P9');
  del.respond(204, null);
  await left;
  assert.ok(!m.log.some((l) => l.startsWith('error')), m.log.join(' '));
});

// --- rooms: mesh ---------------------------------------------------------------------------------

async function meshRoom(me, people, { media } = {}) {
  const m = startRoom(me, people, { mode: 'mesh', media, name: 'room:x' });
  await m.joined;
  return m;
}

const published = (sock, channel) => sock.commands('publish').filter((c) => c.publish.channel === channel).map((c) => c.publish.data);

test('mesh: the newcomer offers (with labels), applies the answer and candidates, surfaces tracks; bye closes', async () => {
  const mic = new FakeTrack('audio');
  const cam = new FakeTrack('video');
  const m = await meshRoom('b', ['a', 'b'], { media: fakeStream(mic, cam) });
  assert.deepEqual(m.log, ['join:a']);
  const pc = m.pcs[0];
  assert.deepEqual(pc.config.iceServers, [{ urls: ['stun:s'] }]);
  const [offer] = await until(() => published(m.sock, 'room:x@a').length && published(m.sock, 'room:x@a'));
  assert.deepEqual(offer, { type: 'offer', sdp: 'offer-1', labels: { 0: 'mic', 1: 'camera' } });
  // ICE candidates trickle through the inbox.
  pc.onicecandidate({ candidate: { candidate: 'candidate:1 1 udp 1 1.2.3.4 5 typ host', sdpMid: '0', sdpMLineIndex: 0 } });
  assert.deepEqual(published(m.sock, 'room:x@a').at(-1), {
    type: 'candidate', candidate: { candidate: 'candidate:1 1 udp 1 1.2.3.4 5 typ host', sdpMid: '0', sdpMLineIndex: 0 },
  });
  // Only the server-set sender counts: a message without `info` is ignored.
  deliver(m.sock, 'room:x@b', { type: 'answer', sdp: 'forged' });
  await settle();
  assert.equal(pc.remoteDescription, null);
  deliver(m.sock, 'room:x@b', { type: 'answer', sdp: 'answer-a', labels: { 1: 'screen' } }, 'a');
  deliver(m.sock, 'room:x@b', { type: 'candidate', candidate: { candidate: 'candidate:2', sdpMid: '0', sdpMLineIndex: 0 } }, 'a');
  await until(() => pc.candidates.length);
  assert.deepEqual(pc.remoteDescription, { type: 'answer', sdp: 'answer-a' });
  assert.deepEqual(pc.candidates, [{ candidate: 'candidate:2', sdpMid: '0', sdpMLineIndex: 0 }]);
  const remote = new FakeTrack('video', 'remote-1');
  pc.ontrack({ track: remote, streams: [], transceiver: { mid: '1' } });
  assert.deepEqual(m.log.slice(-1), ['track:a:screen:remote-1']);
  deliver(m.sock, 'room:x@b', { type: 'bye' }, 'a');
  await settle();
  assert.equal(pc.closed, true);
  assert.deepEqual(m.log.slice(-1), ['ended:a:remote-1']);
});

test('mesh: members wait for a newcomer\'s offer and answer it; leave says bye', async () => {
  const m = await meshRoom('a', ['a'], { media: fakeStream(new FakeTrack('video')) });
  assert.equal(m.pcs.length, 0, 'alone in the room: no peer connection');
  m.sock.receive({ join: { channel: 'room:x', client: 'c', user: 'u-c', name: 'C' } });
  assert.deepEqual(m.log, ['join:c']);
  await settle();
  assert.equal(m.pcs.length, 0, 'the newcomer offers, not us');
  deliver(m.sock, 'room:x@a', { type: 'offer', sdp: 'offer-from-c', labels: {} }, 'c');
  const answer = await until(() => published(m.sock, 'room:x@c').find((d) => d.type === 'answer'));
  assert.deepEqual(answer, { type: 'answer', sdp: 'answer-to-offer-from-c', labels: { 0: 'camera' } });
  assert.equal(m.pcs[0].signalingState, 'stable');
  await m.room.leave();
  assert.deepEqual(published(m.sock, 'room:x@c').at(-1), { type: 'bye' });
  assert.equal(m.pcs[0].closed, true);
});

test('mesh: on glare the impolite peer (higher id) keeps its offer, the polite one yields', async () => {
  // "b" offers to "a"; "a" offers to "b" at the same time. "b" > "a": b is impolite and ignores a's offer.
  const b = await meshRoom('b', ['a', 'b'], { media: fakeStream(new FakeTrack('audio')) });
  await until(() => published(b.sock, 'room:x@a').length);
  deliver(b.sock, 'room:x@b', { type: 'offer', sdp: 'offer-from-a' }, 'a');
  deliver(b.sock, 'room:x@b', { type: 'candidate', candidate: { candidate: 'x' } }, 'a');
  await settle();
  assert.equal(b.pcs[0].signalingState, 'have-local-offer');
  assert.ok(!published(b.sock, 'room:x@a').some((d) => d.type === 'answer'));
  assert.ok(!b.log.some((l) => l.startsWith('error')));

  // "a" is polite: with its own offer out, it takes b's offer (rolling its own back) and answers.
  const a = await meshRoom('a', ['a', 'b'], { media: fakeStream(new FakeTrack('audio')) });
  await until(() => published(a.sock, 'room:x@b').length);
  assert.equal(a.pcs[0].signalingState, 'have-local-offer');
  deliver(a.sock, 'room:x@a', { type: 'offer', sdp: 'offer-from-b' }, 'b');
  const ans = await until(() => published(a.sock, 'room:x@b').find((d) => d.type === 'answer'));
  assert.equal(ans.sdp, 'answer-to-offer-from-b');
  assert.equal(a.pcs[0].rolledBack, true);
});

test('mesh: a reconnect that keeps the client id keeps the call: same peer connections, no new offers', async () => {
  const m = await meshRoom('b', ['a', 'b']);
  const first = m.pcs[0];
  const offers = await until(() => published(m.sock, 'room:x@a').length);
  m.sock.serverClose(3000, 'shutdown');
  await m.clock.advance(1000);
  const sock = m.ws[1];
  sock.handshake({ client: 'b' });
  await replySubscribe(sock, 'room:x@b');
  await replySubscribe(sock, 'room:x');
  await settle();
  assert.equal(first.closed, false);
  assert.equal(m.pcs.length, 1);
  // The offer that was in flight when the connection dropped goes again, under its idempotency key.
  const sent = (s) => s.commands('publish').filter((c) => c.publish.channel === 'room:x@a').map((c) => c.publish);
  const again = await until(() => sent(sock).length && sent(sock));
  assert.equal(offers, 1);
  assert.deepEqual(again, sent(m.ws[0]), 'the same offer, the same key');
  assert.ok(again[0].idempotency_key);
  assert.ok(!m.log.some((l) => l.startsWith('error')), m.log.join(' '));
});

test('mesh: a participant that drops out without a bye keeps a working peer connection for the grace', async () => {
  const m = await meshRoom('b', ['a', 'b']);
  const pc = m.pcs[0];
  pc.setConnectionState('connected');
  const leave = () => m.sock.receive({ leave: { channel: 'room:x', client: 'a', user: 'u-a' } });
  const join = () => m.sock.receive({ join: { channel: 'room:x', client: 'a', user: 'u-a', name: 'a' } });
  leave();
  assert.deepEqual(m.log.slice(-1), ['leave:a'], 'the participant list is truthful');
  await m.clock.advance(10_000);
  assert.equal(pc.closed, false, 'within the grace');
  join();
  await m.clock.advance(30_000);
  assert.equal(pc.closed, false, 'back in time: the call goes on');
  leave();
  await m.clock.advance(15_000);
  assert.equal(pc.closed, true, 'gone for good');
  // A peer connection that is not carrying media closes at once.
  join();
  deliver(m.sock, 'room:x@b', { type: 'offer', sdp: 'offer-from-a' }, 'a');
  await until(() => m.pcs.length === 2);
  leave();
  assert.equal(m.pcs[1].closed, true);
});

test('speakers: RMS level of each round from the energy totals, own microphone unless muted, emitted on change', async () => {
  const mic = new FakeTrack('audio');
  const m = await meshRoom('b', ['a', 'b'], { media: fakeStream(mic) });
  const pc = m.pcs[0];
  pc.ontrack({ track: new FakeTrack('audio', 'a-mic'), streams: [], transceiver: { mid: '0' } });
  const heard = [];
  m.room.on('speakers', (list) => heard.push(list.map((x) => `${x.participant.client}:${x.level.toFixed(2)}`).join(' ')));
  // Energy is the sum of squared samples times their duration: RMS = sqrt(ΔE / Δd).
  const totals = (inE, outE, d) => {
    pc.stats = [
      ['in', { type: 'inbound-rtp', kind: 'audio', mid: '0', totalAudioEnergy: inE, totalSamplesDuration: d }],
      ['src', { type: 'media-source', kind: 'audio', trackIdentifier: mic.id, totalAudioEnergy: outE, totalSamplesDuration: d }],
    ];
  };
  totals(0, 0, 10);
  await m.clock.advance(500); // the first round only takes the totals
  totals(0.5 * 0.25, 0.5 * 0.0001, 10.5); // a at 0.5, us at 0.01 (the threshold)
  await m.clock.advance(500);
  totals(0.5 * 0.25 + 0.5 * 0.16, 0.5 * 0.0001, 11); // a at 0.4, us silent
  await m.clock.advance(500);
  totals(0.205, 0.5 * 0.0001 + 0.5 * 0.64, 11.5); // us at 0.8: we come first
  await m.clock.advance(500);
  m.room.setMuted('audio', true);
  totals(0.205, 0.37, 12); // muted: our own level does not count
  await m.clock.advance(500);
  assert.deepEqual(heard, ['a:0.50 b:0.01', 'a:0.40', 'b:0.80', '']);
  await m.room.leave();
  await m.clock.advance(2000);
  assert.equal(heard.length, 4, 'no rounds after leaving');
});

test('mesh: a reconnect is a rejoin: new inbox, old peer connections closed, offers again', async () => {
  const m = await meshRoom('b', ['a', 'b']);
  const first = m.pcs[0];
  await until(() => published(m.sock, 'room:x@a').length);
  m.sock.serverClose(3000, 'shutdown');
  assert.equal(first.closed, false, 'not before the client is back');
  await m.clock.advance(1000);
  assert.equal(m.ws.length, 2);
  const sock = m.ws[1];
  sock.handshake({ client: 'b2' });
  assert.equal(first.closed, true);
  (await request(m.http, 'GET', /\/api\/ice-servers$/)).respond(200, { iceServers: [] });
  await replySubscribe(sock, 'room:x@b2');
  assert.ok(sock.commands('subscribe').some((c) => c.subscribe.channel === 'room:x'), 'the room resumes');
  await replySubscribe(sock, 'room:x');
  const p = await until(() => sock.commands('presence')[0]);
  sock.receive({ id: p.id, presence: { clients: { a: { user: 'u-a' }, b: { user: 'u-b' }, b2: { user: 'u-b' } } } });
  await until(() => published(sock, 'room:x@a').length);
  assert.equal(m.room.clientId, 'b2');
  assert.deepEqual(m.room.participants().map((x) => x.client).sort(), ['a', 'b2'], 'our old id is not a participant');
  assert.ok(!published(sock, 'room:x@b').length, 'no offer to our own old id');
  assert.equal(m.pcs.length, 2);
});

test('mesh: over HTTP (the one-way fallbacks) signals to a peer go one at a time, so a candidate never overtakes its offer', async () => {
  const m = await meshRoom('b', ['a', 'b']);
  const calls = [];
  m.sb._wsConn = () => null; // as on SSE, streaming or polling: every publish is its own request
  m.sb.publish = (channel, data) => new Promise((resolve) => calls.push({ channel, data, resolve }));
  m.room._mesh.signal('a', { type: 'offer', sdp: 'o' });
  m.room._mesh.signal('a', { type: 'candidate', candidate: { candidate: 'c1' } });
  m.room._mesh.signal('c', { type: 'offer', sdp: 'to-c' }); // another peer does not wait
  await settle();
  assert.deepEqual(calls.map((c) => [c.channel, c.data.type]), [['room:x@a', 'offer'], ['room:x@c', 'offer']]);
  calls[0].resolve({ offset: 1, epoch: 'E' });
  await settle();
  assert.deepEqual(calls.map((c) => c.data.type), ['offer', 'offer', 'candidate'], 'the candidate once the offer is in');
  m.sb._wsConn = () => ({}); // a socket keeps order by itself: no waiting
  m.room._mesh.signal('a', { type: 'candidate', candidate: { candidate: 'c2' } });
  m.room._mesh.signal('a', { type: 'candidate', candidate: { candidate: 'c3' } });
  await settle();
  assert.equal(calls.length, 5);
});
