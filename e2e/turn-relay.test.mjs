// End-to-end: headless Chromium relays a data channel through our TURN server.
//
// Starts the `turn_server` example of crates/turn (build it first:
// `cargo build -p switchboard-turn --example turn_server`), found through
// $SWITCHBOARD_TURN_EXAMPLE or at $CARGO_TARGET_DIR/debug/examples/turn_server (default
// target dir: ../target). In one page, two RTCPeerConnections with iceTransportPolicy 'relay'
// and our server as their only ICE server exchange data-channel messages; the test checks
// they arrived and that the selected candidate pair is relay/relay.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { launchBrowser, startServer } from './helpers.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const SECRET = 'e2e-turn-secret';

function examplePath() {
  if (process.env.SWITCHBOARD_TURN_EXAMPLE) return process.env.SWITCHBOARD_TURN_EXAMPLE;
  const target = process.env.CARGO_TARGET_DIR ?? resolve(here, '..', 'target');
  return join(target, 'debug', 'examples', 'turn_server');
}

function startTurn(bin) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(bin, ['--secret', SECRET, '--allow-loopback-peers', '--realm', 'e2e'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const timer = setTimeout(() => reject(new Error('turn_server did not report its port')), 10_000);
    let buf = '';
    child.stdout.on('data', (chunk) => {
      buf += chunk;
      const m = buf.match(/TURN_LISTEN=([\d.]+):(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolvePromise({ child, host: m[1], port: Number(m[2]) });
      }
    });
    child.on('exit', (code) => reject(new Error(`turn_server exited with ${code}`)));
  });
}

// coturn's use-auth-secret scheme, as switchboard_turn::make_credential makes it.
function credential(user, ttlSeconds) {
  const username = `${Math.floor(Date.now() / 1000) + ttlSeconds}:${user}`;
  const password = createHmac('sha1', SECRET).update(username).digest('base64');
  return { username, password };
}

// In the page: two RTCPeerConnections that may only use relayed candidates exchange 10 messages
// and their echoes; answers what arrived and the selected candidate pair.
async function relayInPage(iceServers) {
  const config = { iceServers, iceTransportPolicy: 'relay' };
    const a = new RTCPeerConnection(config);
    const b = new RTCPeerConnection(config);
    const candidates = { a: [], b: [] };
    a.onicecandidate = (e) => { if (e.candidate) { candidates.a.push(e.candidate.type); b.addIceCandidate(e.candidate); } };
    b.onicecandidate = (e) => { if (e.candidate) { candidates.b.push(e.candidate.type); a.addIceCandidate(e.candidate); } };
    const received = [];
    const echoed = [];
    b.ondatachannel = (e) => {
      e.channel.onmessage = (m) => { received.push(m.data); e.channel.send(`echo:${m.data}`); };
    };
    const dc = a.createDataChannel('e2e');
    const done = new Promise((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`timeout: received=${received.length} echoed=${echoed.length} ` +
        `ice=${a.iceConnectionState}/${b.iceConnectionState} candidates=${JSON.stringify(candidates)}`)), 30_000);
      dc.onmessage = (m) => {
        echoed.push(m.data);
        if (echoed.length === 10) { clearTimeout(timer); res(); }
      };
    });
    dc.onopen = () => { for (let i = 0; i < 10; i++) dc.send(`message ${i}`); };
    await a.setLocalDescription(await a.createOffer());
    await b.setRemoteDescription(a.localDescription);
    await b.setLocalDescription(await b.createAnswer());
    await a.setRemoteDescription(b.localDescription);
    await done;

    const stats = await a.getStats();
    let pair = null;
    stats.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
    });
    if (!pair) stats.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
    const local = pair && stats.get(pair.localCandidateId);
    const remote = pair && stats.get(pair.remoteCandidateId);
    a.close();
    b.close();
    return {
      received, echoed, candidates,
      localType: local?.candidateType, remoteType: remote?.candidateType,
      relayProtocol: local?.relayProtocol, bytesSent: pair?.bytesSent,
    };
}

function assertRelayed(result) {
  assert.deepEqual(result.received, Array.from({ length: 10 }, (_, i) => `message ${i}`));
  assert.deepEqual(result.echoed, Array.from({ length: 10 }, (_, i) => `echo:message ${i}`));
  assert.ok(result.candidates.a.length > 0 && result.candidates.a.every((c) => c === 'relay'), JSON.stringify(result.candidates));
  assert.equal(result.localType, 'relay');
  assert.equal(result.remoteType, 'relay');
  assert.equal(result.relayProtocol, 'udp');
  assert.ok(result.bytesSent > 0);
}

test('Chromium relays a data channel through the TURN server', { timeout: 60_000 }, async (t) => {
  const bin = examplePath();
  if (!existsSync(bin) || !existsSync('/usr/bin/chromium')) {
    const what = !existsSync(bin) ? `${bin} (cargo build -p switchboard-turn --example turn_server)` : '/usr/bin/chromium';
    if (process.env.CI) assert.fail(`missing ${what}`);
    t.skip(`missing ${what}`);
    return;
  }
  const turn = await startTurn(bin);
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    const { username, password } = credential('e2e-user', 600);
    const iceServers = [{ urls: `turn:${turn.host}:${turn.port}?transport=udp`, username, credential: password }];
    const result = await page.evaluate(relayInPage, iceServers);

    assertRelayed(result);
  } finally {
    await browser.close();
    turn.child.kill('SIGTERM');
  }
});

test('switchboard serve: /api/ice-servers credentials relay a data channel through the built-in TURN', { timeout: 60_000 }, async (t) => {
  const srv = await startServer({ args: ['--no-demo', '--turn-allow-loopback-peers'] });
  t.after(() => srv.stop());
  const browser = await launchBrowser();
  t.after(() => browser.close());
  const page = await browser.newPage();
  await page.goto(`${srv.url}/healthz`);
  const ice = await page.evaluate(async () => (await fetch('/api/ice-servers')).json());
  assert.ok(ice.ttl > 0);
  const turnUrls = ice.iceServers.flatMap((s) => s.urls).filter((u) => u.startsWith('turn:'));
  assert.ok(turnUrls.some((u) => u.endsWith('?transport=udp')) && turnUrls.some((u) => u.endsWith('?transport=tcp')), JSON.stringify(ice));
  assertRelayed(await page.evaluate(relayInPage, ice.iceServers));
  const metrics = await (await fetch(`${srv.url}/metrics`)).text();
  assert.match(metrics, /^switchboard_turn_\w+/m, 'TURN metrics are on /metrics');
});
