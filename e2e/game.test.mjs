// End-to-end: the /game demo (Sketch & Guess) in headless Chromium with fake cameras. Two
// players join an SFU call and a game; one draws, the other sees the strokes and the video; a
// right guess scores on the server's word (and a page cannot write the state channel); a third
// page joining mid-round sees the drawing so far; a dropped connection comes back to the same
// game with its score and its call. Screenshots go to e2e/artifacts/.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchBrowser, startServer, waitUntil } from './helpers.mjs';

const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), 'artifacts');
const DESKTOP = { width: 1280, height: 820 };
const PHONE = { width: 390, height: 844 };

let server;
let browser;
const errors = [];

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  // Long rounds: the test, not the clock, ends them.
  server = await startServer({ args: ['--turn-allow-loopback-peers'], env: { SWITCHBOARD_GAME_ROUND_SECS: '600' } });
  browser = await launchBrowser({ media: true });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function player(name, game, viewport = DESKTOP) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(`${name}: ${e.message}`));
  await page.goto(`${server.url}/game?name=${name}&game=${game}&transport=websocket&autojoin=1`);
  await page.waitForFunction(() => window.game.room && window.game.room.state === 'joined', null, { timeout: 20_000 });
  return page;
}

const me = (page) => page.evaluate(() => window.game.sb.clientId);
const gameState = (page) => page.evaluate(() => window.game.state);

/** The page whose player draws now, and the others. */
async function roles(pages) {
  const round = await waitUntil(async () => {
    const states = await Promise.all(pages.map(gameState));
    const s = states[0];
    return s.phase === 'drawing' && states.every((x) => x.round === s.round && x.drawer === s.drawer) && s;
  }, { timeoutMs: 20_000, message: 'a round being drawn, seen alike by every page' });
  const ids = await Promise.all(pages.map(me));
  const i = ids.indexOf(round.drawer);
  assert.ok(i >= 0, 'the drawer is one of the players');
  return { round: round.round, drawer: pages[i], others: pages.filter((_, j) => j !== i), ids };
}

/** Draws a zigzag with the mouse on the page's canvas. */
async function scribble(page, seed) {
  const box = await page.locator('#board').boundingBox();
  for (let s = 0; s < 2; s++) {
    await page.mouse.move(box.x + box.width * (0.2 + 0.1 * seed), box.y + box.height * (0.3 + 0.3 * s));
    await page.mouse.down();
    for (let i = 1; i <= 12; i++) {
      await page.mouse.move(box.x + box.width * (0.2 + 0.05 * i), box.y + box.height * (0.3 + 0.3 * s + (i % 2 ? 0.1 : 0)), { steps: 3 });
    }
    await page.mouse.up();
  }
}

/** Strokes drawn on the page's canvas, and how many pixels are not white. */
const canvas = (page) => page.evaluate(() => {
  const c = document.getElementById('board');
  const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let inked = 0;
  for (let i = 0; i < px.length; i += 4) if (px[i] < 200 || px[i + 1] < 200 || px[i + 2] < 200) inked++;
  return { strokes: Number(c.dataset.strokes), inked };
});

/** Frames the page's <video> of `client` has decoded. */
const frames = (page, client) => page.evaluate((c) => {
  const v = document.querySelector(`#tiles figure.tile[data-client="${c}"] video`);
  return v && v.videoWidth > 0 ? v.getVideoPlaybackQuality().totalVideoFrames : 0;
}, client);

const tile = (page, client) => page.evaluate((c) => {
  const el = document.querySelector(`#tiles figure.tile[data-client="${c}"]`);
  return el && { score: Number(el.dataset.score), transport: el.dataset.transport, away: el.dataset.away !== undefined };
}, client);

test('two players draw and guess on a call; a late joiner sees the drawing; a dropped player comes back', async () => {
  const game = `e2e-${Date.now().toString(36)}`;
  const ada = await player('Ada', game);
  const bob = await player('Bob', game);
  let { round, drawer, others: [guesser], ids } = await roles([ada, bob]);
  const [drawerId, guesserId] = [await me(drawer), await me(guesser)];

  // Each player's transport is shown on every page.
  for (const page of [ada, bob]) {
    for (const id of ids) {
      await waitUntil(async () => (await tile(page, id))?.transport === 'websocket', { message: `transport of ${id} shown` });
    }
  }

  // The drawer alone knows the word; the guesser sees its length.
  const word = await waitUntil(() => drawer.textContent('#word'), { message: 'the drawer is told the word' });
  assert.equal(await guesser.textContent('#word'), '');
  assert.equal((await guesser.textContent('#hint')).replaceAll(' ', ''), '_'.repeat(word.length));

  // Strokes reach the guesser, and so does the drawer's camera.
  await scribble(drawer, 0);
  const drawn = await canvas(drawer);
  assert.ok(drawn.strokes > 2 && drawn.inked > 200, `drew: ${JSON.stringify(drawn)}`);
  await waitUntil(async () => (await canvas(guesser)).strokes === drawn.strokes, { message: 'the guesser sees every stroke' });
  assert.ok((await canvas(guesser)).inked > 200, 'the strokes are painted');
  await waitUntil(async () => (await frames(guesser, drawerId)) > 10, { timeoutMs: 20_000, message: 'the guesser decodes the drawer\'s video' });
  await waitUntil(async () => (await frames(drawer, guesserId)) > 10, { timeoutMs: 20_000, message: 'the drawer decodes the guesser\'s video' });
  await drawer.screenshot({ path: join(ARTIFACTS, 'game-drawer.png') });

  // The state channel is the referee's alone, and nobody else reads the guesses.
  const refused = await guesser.evaluate(async () => {
    const { sb, channels } = window.game;
    const write = await sb.publish(channels.state, { type: 'state', phase: 'reveal', players: [] }).then(() => 0, (e) => e.code);
    const read = await sb.history(channels.guess).then(() => 0, (e) => e.code);
    return { write, read };
  });
  assert.deepEqual(refused, { write: 103, read: 103 }, 'permission denied both ways');

  // A wrong guess is chat; the right one scores, as the server decides.
  await guesser.fill('#guess', 'definitely not it');
  await guesser.press('#guess', 'Enter');
  await waitUntil(() => drawer.locator('#chat li[data-kind="chat"]', { hasText: 'definitely not it' }).count());
  await guesser.fill('#guess', word.toUpperCase());
  await guesser.press('#guess', 'Enter');
  for (const page of [ada, bob]) {
    await waitUntil(() => page.locator('#chat li[data-kind="correct"]').count(), { message: 'the right guess is announced' });
    await waitUntil(async () => (await tile(page, guesserId))?.score > 0, { message: 'the guesser scores' });
    assert.equal((await tile(page, drawerId)).score, 25, 'the drawer scores for the guess');
  }
  const score = (await tile(drawer, guesserId)).score;
  assert.equal(await drawer.locator('#chat li', { hasText: word }).filter({ hasNotText: 'The word was' }).count(), 0, 'the word itself was never sent as chat');

  // The next round: the pen passes, the canvas is wiped.
  await waitUntil(async () => (await gameState(ada)).round === round + 1, { timeoutMs: 15_000, message: 'round 2' });
  ({ round, drawer, others: [guesser] } = await roles([ada, bob]));
  assert.equal(await me(drawer), guesserId, 'the other player draws now');
  assert.equal((await canvas(guesser)).strokes, 0, 'a new round starts blank');
  await waitUntil(() => drawer.textContent('#word'), { message: 'the new drawer is told the word' });
  await scribble(drawer, 1);
  const second = await canvas(drawer);

  // A third player joining mid-round sees the drawing so far, from history.
  const cy = await player('Cy', game, PHONE);
  await waitUntil(async () => (await canvas(cy)).strokes === second.strokes, { message: 'the late joiner redraws the round' });
  assert.ok((await canvas(cy)).inked > 200);
  await waitUntil(async () => (await tile(cy, guesserId))?.score === score, { message: 'the late joiner sees the scores' });
  await waitUntil(async () => (await frames(cy, drawerId)) > 5, { timeoutMs: 20_000, message: 'the late joiner sees the video' });
  await cy.screenshot({ path: join(ARTIFACTS, 'game-phone.png') });

  // Bob's connection drops: same client, same score, and the call resumes.
  const bobId = await me(bob);
  const bobScore = (await tile(ada, bobId)).score;
  const adaId = await me(ada);
  const before = await frames(bob, adaId);
  await bob.evaluate(() => new Promise((resolve) => {
    const { sb } = window.game;
    let dropped = false;
    sb.on('state', (e) => {
      if (e.state !== 'connected') dropped = true;
      else if (dropped) resolve();
    });
    sb.dropConnection();
  }));
  assert.equal(await me(bob), bobId, 'the same client id');
  await waitUntil(async () => {
    const t = await tile(ada, bobId);
    return t && !t.away && t.score === bobScore;
  }, { message: 'Bob is back with his score' });
  assert.equal((await tile(bob, bobId)).score, bobScore, 'Bob\'s page shows his score');
  await waitUntil(async () => (await frames(bob, adaId)) > before + 10, { timeoutMs: 20_000, message: 'Bob\'s call comes back' });
  const bobRound = await gameState(bob);
  assert.equal(bobRound.round, round, 'the same round');
  await bob.screenshot({ path: join(ARTIFACTS, 'game-after-drop.png') });

  assert.deepEqual(errors, [], 'no page errors');
});

test('the game API refuses a bad game name with a stable code', async () => {
  const res = await fetch(`${server.url}/game/api/games/${encodeURIComponent('no spaces!')}`, { method: 'POST' });
  assert.equal(res.status, 400);
  assert.equal((await res.json()).error.code, 107);
});
