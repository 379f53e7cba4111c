import { chromium } from 'playwright-core';
const port = process.argv[2];
const b = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox','--disable-gpu','--no-first-run','--disable-background-networking','--disable-component-update','--disable-sync'] });
const page = await b.newPage();
page.on('console', m => console.log('page:', m.text()));
await page.goto(`http://127.0.0.1:${port}/healthz`);
const r = await page.evaluate(async (port) => {
  const info = await (await fetch('/wt/cert-hash')).json();
  const hash = new Uint8Array(info.hash.match(/../g).map(h => parseInt(h, 16)));
  const wt = new WebTransport(`https://127.0.0.1:${port}/wt`, { serverCertificateHashes: [{ algorithm: 'sha-256', value: hash }] });
  await wt.ready;
  const s = await wt.createBidirectionalStream();
  const w = s.writable.getWriter();
  const enc = new TextEncoder();
  const frame = (obj) => { const p = enc.encode(JSON.stringify(obj)); const f = new Uint8Array(5 + p.length); f[0] = 0; new DataView(f.buffer).setUint32(1, p.length); f.set(p, 5); return f; };
  await w.write(frame({ id: 1, subscribe: { channel: 'demo:ticker' } }));
  const reader = s.readable.getReader();
  let buf = new Uint8Array(0); const out = [];
  const t0 = Date.now();
  while (out.length < 3 && Date.now() - t0 < 5000) {
    const { value, done } = await reader.read(); if (done) break;
    const nb = new Uint8Array(buf.length + value.length); nb.set(buf); nb.set(value, buf.length); buf = nb;
    while (buf.length >= 5) { const len = new DataView(buf.buffer, buf.byteOffset).getUint32(1); if (buf.length < 5 + len) break; out.push(new TextDecoder().decode(buf.subarray(5, 5 + len))); buf = buf.slice(5 + len); }
  }
  wt.close();
  return out;
}, port);
console.log(r);
await b.close();
