// The transport lab's page: picks techniques, runs lab-run.js's session over each in turn, and
// shows the results as a table, charts, Markdown and JSON. `?autorun=1&techniques=a,b&idle=2`
// (and the other inputs' ids) runs at once; `window.lab` exposes the results (tests read it).
import { Control, TECHNIQUES, measure, unavailable } from '/demo/lab-run.js';

const COLORS = ['#2f6fe4', '#d64545', '#1f9d55', '#c98a00', '#7b4ddb', '#0f9bb5', '#e0631d', '#8a5a44', '#d6459b', '#4b5563', '#94a31c'];
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const lab = { results: [], done: false, running: false, error: null };
window.lab = lab;
let ctl = null;
let stopRequested = false;

const color = (id) => COLORS[TECHNIQUES.findIndex((t) => t.id === id) % COLORS.length];
const wanted = params.get('techniques')?.split(',');
for (const t of TECHNIQUES) {
  const why = unavailable(t);
  const label = document.createElement('label');
  label.className = `chip${why ? ' off' : ''}`;
  label.title = why || t.label;
  label.dataset.id = t.id;
  label.style.setProperty('--c', color(t.id));
  label.innerHTML = `<input type="checkbox" value="${t.id}"><i></i>${t.label}`;
  const box = label.querySelector('input');
  box.checked = !why && (wanted ? wanted.includes(t.id) : true);
  box.disabled = !!why;
  $('techniques').append(label);
}
for (const id of ['count', 'gap', 'size', 'idle', 'poll', 'delay', 'jitter', 'loss']) {
  if (params.has(id)) $(id).value = params.get(id);
}
const outputs = () => {
  $('delay-out').textContent = `${$('delay').value} ms`;
  $('jitter-out').textContent = `${$('jitter').value} ms`;
  $('loss-out').textContent = `${$('loss').value} %`;
};
for (const id of ['delay', 'jitter', 'loss']) $(id).addEventListener('input', outputs);
outputs();

const num = (id) => Number($(id).value);
const fmt = (v) => (v == null ? '–' : String(v));
const status = (text) => { $('status').textContent = text; };

async function control() {
  if (ctl && ctl.ws.readyState === WebSocket.OPEN) return ctl;
  ctl = await Control.open();
  $('session').textContent = `session ${ctl.hello.session.slice(0, 8)}`;
  $('session').classList.remove('muted');
  return ctl;
}

async function run() {
  const chosen = [...$('techniques').querySelectorAll('input:checked')].map((b) => TECHNIQUES.find((t) => t.id === b.value));
  if (!chosen.length) return status('Pick at least one technique.');
  lab.running = true; lab.done = false; stopRequested = false;
  $('run').disabled = true; $('stop').disabled = false;
  try {
    const c = await control();
    const impairment = { delay_ms: num('delay'), jitter_ms: num('jitter'), loss: num('loss') / 100 };
    await c.call('impair', impairment);
    for (const [i, t] of chosen.entries()) {
      if (stopRequested) break;
      const chip = $('techniques').querySelector(`[data-id="${t.id}"]`);
      chip.dataset.run = 'running';
      const progress = (text) => status(`${i + 1}/${chosen.length} ${t.label}: ${text}…`);
      try {
        const row = await measure(c, t, {
          count: num('count'), gapMs: num('gap'), size: num('size'), idleMs: num('idle') * 1000,
          pollMs: num('poll'), dropCount: 10, impairment, progress,
        });
        lab.results.push(row);
        chip.dataset.run = 'done';
      } catch (e) {
        chip.dataset.run = 'failed';
        lab.results.push({ id: t.id, technique: t.label, impairment, error: String(e.message || e) });
      }
      render();
    }
    status(stopRequested ? 'Stopped.' : `Done: ${chosen.length} technique${chosen.length > 1 ? 's' : ''}.`);
  } catch (e) {
    lab.error = String(e.message || e);
    status(`Failed: ${lab.error}`);
  } finally {
    lab.running = false; lab.done = true;
    $('run').disabled = false; $('stop').disabled = true;
    document.body.dataset.done = 'true';
  }
}

const network = (i) => (!i || (!i.delay_ms && !i.jitter_ms && !i.loss) ? 'clean'
  : `${i.delay_ms}±${i.jitter_ms} ms, ${Math.round(i.loss * 100)}% loss`);

function render() {
  const rows = lab.results;
  for (const id of ['copy', 'download', 'clear']) $(id).disabled = !rows.length;
  const body = $('rows');
  body.replaceChildren();
  if (!rows.length) {
    body.innerHTML = '<tr class="empty"><td colspan="11">Pick techniques and press Run.</td></tr>';
  }
  for (const r of rows) {
    const tr = document.createElement('tr');
    tr.dataset.id = r.id;
    const cells = r.error
      ? [r.technique, network(r.impairment), { text: r.error, cls: 'bad', span: 9 }]
      : [r.technique, network(r.impairment), r.p50_ms, r.p99_ms, r.down_bytes_per_msg, r.up_bytes_per_msg,
        r.idle_requests_per_min, r.drop_noticed_ms, r.resumed_ms,
        { text: r.lost + r.lost_across_drop, cls: r.lost + r.lost_across_drop ? 'bad' : 'good' },
        { text: r.duplicates, cls: r.duplicates ? 'bad' : 'good' }];
    cells.forEach((c, i) => {
      const td = document.createElement('td');
      const cell = c && typeof c === 'object' ? c : { text: c };
      td.textContent = fmt(cell.text);
      if (cell.cls) td.className = cell.cls;
      if (cell.span) td.colSpan = cell.span;
      if (i === 0) {
        const dot = document.createElement('span');
        dot.className = 'dot';
        dot.style.setProperty('--c', color(r.id));
        td.prepend(dot);
      }
      tr.append(td);
    });
    body.append(tr);
  }
  const notes = [...new Set(rows.filter((r) => r.note).map((r) => `${r.technique}: ${r.note}.`))];
  $('notes').textContent = notes.join(' ');
  charts(rows.filter((r) => !r.error && r.latencies?.length));
  bars(rows.filter((r) => !r.error));
}

let hist = null;
let timeline = null;
function charts(rows) {
  const width = Math.max(280, $('hist').clientWidth || 600);
  hist?.destroy(); timeline?.destroy();
  if (!rows.length) return;
  // Log-spaced buckets: polling's hundreds of ms and WebSocket's single ms on one axis.
  const all = rows.flatMap((r) => r.latencies);
  const [lo, hi] = [Math.max(0.1, Math.min(...all) / 1.5), Math.max(...all) * 1.5];
  const edges = [];
  for (let x = lo; x < hi * 1.5; x *= 1.5) edges.push(x);
  const counts = rows.map((r) => edges.map((e, i) => r.latencies.filter((v) => v >= (i ? edges[i - 1] : 0) && v < e).length));
  const series = rows.map((r) => ({ label: label(r), stroke: color(r.id), fill: `${color(r.id)}22`, width: 2, paths: uPlot.paths.stepped({ align: 1 }) }));
  hist = new uPlot({
    width, height: 240, series: [{ label: 'ms' }, ...series],
    scales: { x: { distr: 3, time: false } }, axes: [{ label: 'latency (ms, log)' }, { label: 'messages' }],
    legend: { live: false },
  }, [edges, ...counts], $('hist'));
  const n = Math.max(...rows.map((r) => r.series.length));
  const xs = Array.from({ length: n }, (_, i) => i);
  const ys = rows.map((r) => { const m = new Map(r.series); return xs.map((i) => m.get(i) ?? null); });
  timeline = new uPlot({
    width, height: 240, series: [{ label: 'message' }, ...rows.map((r) => ({ label: label(r), stroke: color(r.id), width: 1.5, points: { size: 4 } }))],
    scales: { x: { time: false }, y: { distr: 3 } }, axes: [{ label: 'message #' }, { label: 'latency (ms, log)' }],
    legend: { live: false },
  }, [xs, ...ys], $('timeline'));
}

const label = (r) => (network(r.impairment) === 'clean' ? r.technique : `${r.technique} (${network(r.impairment)})`);

function bars(rows) {
  const box = $('bytes');
  box.replaceChildren();
  const measured = rows.filter((r) => r.down_bytes_per_msg != null);
  const max = Math.max(1, ...measured.map((r) => r.down_bytes_per_msg + r.up_bytes_per_msg));
  for (const r of rows) {
    const line = document.createElement('div');
    line.className = 'bar';
    line.style.setProperty('--c', color(r.id));
    const known = r.down_bytes_per_msg != null;
    line.innerHTML = `<span></span><span class="track"><span class="down"></span><span class="up"></span></span><span class="val"></span>`;
    line.children[0].textContent = label(r);
    line.querySelector('.down').style.width = `${known ? (100 * r.down_bytes_per_msg) / max : 0}%`;
    line.querySelector('.up').style.width = `${known ? (100 * r.up_bytes_per_msg) / max : 0}%`;
    line.children[2].textContent = known ? `${r.down_bytes_per_msg} ↓ ${r.up_bytes_per_msg} ↑` : 'UDP, not counted';
    box.append(line);
  }
}

/** The results as a Markdown table. */
export function markdown(rows) {
  const head = ['technique', 'network', 'p50 ms', 'p99 ms', '↓ B/msg', '↑ B/msg', 'idle req/min', 'drop seen ms', 'resumed ms', 'lost', 'dup'];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`];
  for (const r of rows) {
    const cells = r.error ? [r.technique, network(r.impairment), `error: ${r.error}`, '', '', '', '', '', '', '', '']
      : [r.technique, network(r.impairment), r.p50_ms, r.p99_ms, r.down_bytes_per_msg, r.up_bytes_per_msg, r.idle_requests_per_min,
        r.drop_noticed_ms, r.resumed_ms, r.lost + r.lost_across_drop, r.duplicates];
    lines.push(`| ${cells.map(fmt).join(' | ')} |`);
  }
  return `${lines.join('\n')}\n`;
}
lab.markdown = () => markdown(lab.results);

$('run').addEventListener('click', run);
$('stop').addEventListener('click', () => { stopRequested = true; status('Stopping after this technique…'); });
$('clear').addEventListener('click', () => { lab.results = []; render(); });
$('copy').addEventListener('click', async () => {
  try { await navigator.clipboard.writeText(lab.markdown()); status('Copied the table as Markdown.'); }
  catch { status('The clipboard is not available here: use Download JSON.'); }
});
$('download').addEventListener('click', () => {
  const blob = new Blob([JSON.stringify({ userAgent: navigator.userAgent, at: new Date().toISOString(), results: lab.results }, null, 2)], { type: 'application/json' });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = 'switchboard-lab.json';
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
});
let resizeTimer = null;
addEventListener('resize', () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(() => charts(lab.results.filter((r) => !r.error && r.latencies?.length)), 150); });
if (params.get('autorun') === '1') run();
