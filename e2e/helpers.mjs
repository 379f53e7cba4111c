// Shared helpers for the end-to-end tests: start the real `switchboard` binary on a free port,
// launch headless Chromium through playwright-core, wait on conditions with a deadline.
//
// Binary: $SWITCHBOARD_BIN, else $CARGO_TARGET_DIR/debug/switchboard, else ../target/debug/switchboard
// (relative to this directory). Build it first with `cargo build`.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export function serverBin() {
  if (process.env.SWITCHBOARD_BIN) return resolve(process.env.SWITCHBOARD_BIN);
  if (process.env.CARGO_TARGET_DIR) return join(resolve(process.env.CARGO_TARGET_DIR), 'debug', 'switchboard');
  return resolve(here, '..', 'target', 'debug', 'switchboard');
}

const live = new Set();
// Never leave a server behind, whatever way the test process ends.
process.on('exit', () => {
  for (const child of live) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

const LISTENING = /switchboard listening on (https?):\/\/([\d.]+):(\d+)/;

/**
 * Starts `switchboard serve --listen 127.0.0.1:<port>` (port 0: a free one) with extra `args` and
 * `env` (merged over a copy of this process's environment, minus any SWITCHBOARD_* variables the
 * caller did not set, so a developer's shell cannot change the server under test).
 * Resolves `{ port, url, wsUrl, child, logs(), stop() }` once the server printed its address.
 */
export async function startServer({ args = [], env = {}, port = 0, timeoutMs = 15_000 } = {}) {
  const bin = serverBin();
  if (!existsSync(bin)) throw new Error(`switchboard binary not found at ${bin} (run \`cargo build\` or set SWITCHBOARD_BIN)`);
  const childEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('SWITCHBOARD_')) childEnv[k] = v;
  }
  // Every page, peer and socket of a suite comes from loopback, many a second: lift the
  // per-address limits (tests of the limits themselves set them).
  const lifted = { SWITCHBOARD_MAX_CONNECTIONS_PER_IP: '0', SWITCHBOARD_RTC_OFFERS_PER_IP_PER_MINUTE: '0' };
  Object.assign(childEnv, { SWITCHBOARD_LOG: 'warn' }, lifted, env);
  // A restart on the same port may race the old socket's release: retry the bind a few times.
  const attempts = port === 0 ? 1 : 20;
  let lastErr;
  for (let i = 0; i < attempts; i++) {
    try {
      return await spawnOnce(bin, ['serve', '--listen', `127.0.0.1:${port}`, ...args], childEnv, timeoutMs);
    } catch (err) {
      lastErr = err;
      if (!/address already in use|Address in use|AddrInUse/i.test(String(err.message))) throw err;
      await sleep(100);
    }
  }
  throw lastErr;
}

function spawnOnce(bin, argv, env, timeoutMs) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(bin, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    let out = '';
    let err = '';
    let settled = false;
    const exited = new Promise((r) => child.once('exit', (code, signal) => { live.delete(child); r({ code, signal }); }));
    const fail = (e) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      try { child.kill('SIGKILL'); } catch { /* gone */ }
      reject(e);
    };
    const timer = setTimeout(() => fail(new Error(`switchboard did not report its address within ${timeoutMs} ms\nstdout: ${out}\nstderr: ${err}`)), timeoutMs);
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => { err += chunk; if (err.length > 1_000_000) err = err.slice(-500_000); });
    child.on('error', (e) => fail(e));
    child.once('exit', (code, signal) => fail(new Error(`switchboard exited (${code ?? signal}) before listening\nstdout: ${out}\nstderr: ${err}`)));
    child.stdout.on('data', (chunk) => {
      out += chunk;
      if (settled) return;
      const m = out.match(LISTENING);
      if (!m) return;
      settled = true;
      clearTimeout(timer);
      const port = Number(m[3]);
      const tls = m[1] === 'https';
      const server = {
        child,
        port,
        host: m[2],
        url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
        wsUrl: `${tls ? 'wss' : 'ws'}://127.0.0.1:${port}`,
        logs: () => `stdout:\n${out}\nstderr:\n${err}`,
        exited,
        /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
        async stop(graceMs = 3000) {
          if (child.exitCode !== null || child.signalCode !== null) return exited;
          child.kill('SIGTERM');
          const t = setTimeout(() => { try { child.kill('SIGKILL'); } catch { /* gone */ } }, graceMs);
          const r = await exited;
          clearTimeout(t);
          return r;
        },
        /** SIGKILL at once (a crash: no graceful shutdown). */
        async kill() {
          if (child.exitCode !== null || child.signalCode !== null) return exited;
          child.kill('SIGKILL');
          return exited;
        },
      };
      resolvePromise(server);
    });
  });
}

/** Chromium's fake camera and microphone, allowed without a prompt. */
export const FAKE_MEDIA_ARGS = ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', '--autoplay-policy=no-user-gesture-required'];

/** Launches headless Chromium (system binary) with CI-friendly flags; `media` adds a fake camera. */
export function launchBrowser({ media = false, args: extra = [] } = {}) {
  const args = [...(media ? [...CHROMIUM_ARGS, ...FAKE_MEDIA_ARGS] : CHROMIUM_ARGS), ...extra];
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args });
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Polls `fn` (sync or async) until it returns a truthy value; resolves that value. Rejects after
 * `timeoutMs` with `message` and the last value seen (or the last error thrown).
 */
export async function waitUntil(fn, { timeoutMs = 10_000, intervalMs = 50, message = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  let lastErr;
  for (;;) {
    try {
      last = await fn();
      lastErr = undefined;
      if (last) return last;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() >= deadline) {
      const detail = lastErr ? `last error: ${lastErr.message}` : `last value: ${JSON.stringify(last)}`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${message} (${detail})`);
    }
    await sleep(intervalMs);
  }
}

/** Rejects with `message` if `promise` does not settle within `ms`. */
export function withTimeout(promise, ms, message = 'operation') {
  let t;
  return Promise.race([
    promise.finally(() => clearTimeout(t)),
    new Promise((_, reject) => { t = setTimeout(() => reject(new Error(`${message} timed out after ${ms} ms`)), ms); }),
  ]);
}

/** `POST /api/publish`; resolves `{offset, epoch}`. */
export async function publish(baseUrl, channel, data, extra = {}) {
  const res = await fetch(`${baseUrl}/api/publish`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ channel, data, ...extra }),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`publish ${channel}: HTTP ${res.status} ${text}`);
  return JSON.parse(text);
}

/** A free TCP port on loopback (free now: something else may take it before it is used). */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolvePort(port));
    }).on('error', reject);
  });
}

/**
 * A real redis-server on a free loopback port, once it says it accepts connections; `stop()`
 * ends it. A port taken between choosing and binding (other tests start servers too) makes
 * redis exit at once: then it tries another port, up to three times.
 */
export async function startRedis() {
  let last = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    const up = await new Promise((resolveUp) => {
      let out = '';
      const timer = setTimeout(() => resolveUp(false), 15_000);
      const seen = (chunk) => {
        out += chunk;
        if (out.includes('Ready to accept connections')) { clearTimeout(timer); resolveUp(true); }
      };
      proc.stdout.on('data', seen);
      proc.stderr.on('data', seen);
      proc.on('exit', () => { clearTimeout(timer); last = out.trim().split('\n').slice(-2).join(' | '); resolveUp(false); });
      proc.on('error', (e) => { clearTimeout(timer); last = e.message; resolveUp(false); });
    });
    if (up) {
      proc.stdout.resume();
      proc.stderr.resume();
      return { port, url: `redis://127.0.0.1:${port}`, stop: () => proc.kill() };
    }
    proc.kill();
  }
  throw new Error(`redis-server did not start: ${last}`);
}
