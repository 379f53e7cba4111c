// End-to-end: the main listener over TLS in Chromium. A test CA and a certificate for
// 127.0.0.1 are made with the openssl CLI; Chromium trusts the certificate through
// --ignore-certificate-errors-spki-list (its SPKI's SHA-256). Over https the page loads on h2,
// WSS (WebSocket over HTTP/1.1: the server does not advertise RFC 8441) connects and receives a
// publication, and 8 EventSources on one origin all receive: more than HTTP/1.1's 6 per origin.
//
// Run: cargo build && cd e2e && node --test --test-concurrency=1 tls.test.mjs
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchBrowser, startServer } from './helpers.mjs';

let dir;
let spki;
let browser;

function openssl(args, input) {
  return execFileSync('openssl', args, { cwd: dir, input, stdio: ['pipe', 'pipe', 'pipe'] });
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'switchboard-e2e-tls-'));
  const curve = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(['req', '-x509', ...curve, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=e2e-ca']);
  openssl(['req', ...curve, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1']);
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', 'server.pem', '-days', '2', '-extfile', 'server.ext']);
  const pub = openssl(['x509', '-in', 'server.pem', '-pubkey', '-noout']);
  const der = openssl(['pkey', '-pubin', '-outform', 'der'], pub);
  spki = openssl(['dgst', '-sha256', '-binary'], der).toString('base64');
  browser = await launchBrowser({ args: [`--ignore-certificate-errors-spki-list=${spki}`] });
});

after(async () => {
  await browser?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('over https: h2, WSS receives a publication, 8 EventSources on one origin all receive', { timeout: 60_000 }, async (t) => {
  const srv = await startServer({
    args: ['--no-turn', '--no-rtc'],
    env: {
      SWITCHBOARD_TLS_CERT: join(dir, 'server.pem'),
      SWITCHBOARD_TLS_KEY: join(dir, 'server.key'),
      SWITCHBOARD_WEBTRANSPORT: 'false',
    },
  });
  t.after(() => srv.stop());
  assert.match(srv.url, /^https:/);
  const context = await browser.newContext();
  t.after(() => context.close());
  const page = await context.newPage();
  await page.goto(`${srv.url}/healthz`);
  const protocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
  assert.equal(protocol, 'h2');

  const result = await page.evaluate(async () => {
    const publish = (channel, data) => fetch('/api/publish', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ channel, data }),
    }).then((r) => r.status);
    const deadline = (ms, what) => new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms));

    // WSS with our JSON protocol.
    const ws = new WebSocket(`wss://${location.host}/ws`, 'switchboard.v1.json');
    const frames = [];
    const frame = (pred) => Promise.race([deadline(10_000, 'ws frame'), new Promise((resolve) => {
      const check = () => { const f = frames.find(pred); if (f) resolve(f); else setTimeout(check, 20); };
      check();
    })]);
    ws.onmessage = (e) => frames.push(JSON.parse(e.data));
    await Promise.race([deadline(10_000, 'wss open'), new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error('wss error')); })]);
    ws.send(JSON.stringify({ id: 1, connect: { name: 'tls' } }));
    await frame((f) => f.id === 1);
    ws.send(JSON.stringify({ id: 2, subscribe: { channel: 'tls-ws' } }));
    await frame((f) => f.id === 2);
    const wsStatus = await publish('tls-ws', { via: 'api' });
    const push = await frame((f) => f.pub);
    ws.close(1000);

    // 8 EventSources on one origin: over HTTP/1.1 the 7th and 8th would wait for a free socket.
    const sources = [];
    const subscribed = [];
    const received = [];
    for (let i = 0; i < 8; i++) {
      const es = new EventSource('/sse?channel=tls-sse');
      sources.push(es);
      subscribed.push(new Promise((resolve) => es.addEventListener('subscribed', resolve, { once: true })));
      received.push(new Promise((resolve) => { es.onmessage = (e) => resolve(JSON.parse(e.data)); }));
    }
    await Promise.race([deadline(15_000, '8 subscribed'), Promise.all(subscribed)]);
    const sseStatus = await publish('tls-sse', { n: 8 });
    const got = await Promise.race([deadline(15_000, '8 received'), Promise.all(received)]);
    for (const es of sources) es.close();
    const sse = performance.getEntriesByType('resource').filter((e) => e.name.includes('/sse')).map((e) => e.nextHopProtocol);
    return { wsStatus, push: push.pub.data, sseStatus, got: got.map((p) => p.data.n), sse };
  });
  assert.equal(result.wsStatus, 200);
  assert.deepEqual(result.push, { via: 'api' });
  assert.equal(result.sseStatus, 200);
  assert.deepEqual(result.got, [8, 8, 8, 8, 8, 8, 8, 8]);
});
