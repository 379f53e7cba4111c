// The video demo's recordings panel: a Record button (shown when this page may record the room:
// the server answers its listing) and the room's recordings, each file playable in the page.
//
// Stable hooks: #record (aria-pressed, data-recording=ID while recording), #recordings (the
// panel, hidden when the page may not record), #recording-list > li.recording[data-id][data-state]
// each with <video>/<audio controls src=...> per file.

const $ = (id) => document.getElementById(id);

let room = null;
let current = null; // the id of the recording this page started and that is running
let refreshTimer = null;

async function api(method, path) {
  const res = await fetch(path, { method });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw Object.assign(new Error((body.error && body.error.message) || res.statusText), { status: res.status });
  return body;
}

const fmtTime = (ms) => new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const fmtSize = (b) => (b > 1e6 ? `${(b / 1e6).toFixed(1)} MB` : `${Math.max(1, Math.round(b / 1e3))} kB`);
const fmtDur = (ms) => `${Math.floor(ms / 60000)}:${String(Math.round(ms / 1000) % 60).padStart(2, '0')}`;

function showButton() {
  const on = current !== null;
  $('record').setAttribute('aria-pressed', String(on));
  $('record').textContent = on ? 'Stop recording' : 'Record';
  if (on) $('record').dataset.recording = current;
  else delete $('record').dataset.recording;
}

function render(list) {
  const ul = $('recording-list');
  const open = new Set([...ul.querySelectorAll('li[data-open]')].map((li) => li.dataset.id));
  ul.replaceChildren();
  if (!list.length) {
    const li = document.createElement('li');
    li.className = 'empty';
    li.textContent = 'No recordings of this room yet.';
    ul.append(li);
  }
  for (const r of list) {
    const li = document.createElement('li');
    li.className = 'recording';
    li.dataset.id = r.id;
    li.dataset.state = r.state;
    const head = document.createElement('div');
    head.className = 'recording-head';
    const badge = document.createElement('span');
    badge.className = 'pill';
    badge.dataset.state = r.state;
    badge.textContent = r.state;
    const what = document.createElement('span');
    what.textContent = `${fmtTime(r.started)} · ${fmtDur(r.duration_ms)} · ${fmtSize(r.bytes)} · ${r.files.length} file${r.files.length === 1 ? '' : 's'}`;
    head.append(badge, what);
    if (r.reason && r.state !== 'stopped') head.title = r.reason;
    li.append(head);
    if (r.state !== 'recording') {
      const files = document.createElement('div');
      files.className = 'recording-files';
      // A participant's camera, then its microphone, participant by participant.
      const order = (f) => `${f.participant_name || f.participant}|${f.kind === 'video' ? 0 : 1}`;
      for (const f of [...r.files].sort((a, b) => order(a).localeCompare(order(b)))) {
        const fig = document.createElement('figure');
        const media = document.createElement(f.kind === 'video' ? 'video' : 'audio');
        media.controls = true;
        media.preload = 'metadata';
        media.src = f.url;
        media.dataset.file = f.name;
        const cap = document.createElement('figcaption');
        cap.textContent = `${f.participant_name || f.participant} · ${f.label} (${f.codec})`;
        fig.append(media, cap);
        files.append(fig);
      }
      li.append(files);
    }
    ul.append(li);
  }
  for (const id of open) ul.querySelector(`li[data-id="${CSS.escape(id)}"]`)?.setAttribute('data-open', '');
}

async function refresh() {
  if (!room) return;
  try {
    const { recordings } = await api('GET', `/api/recordings?room=${encodeURIComponent(room.name)}`);
    $('recordings').hidden = $('record').hidden = false;
    if (current && !recordings.some((r) => r.id === current && r.state === 'recording')) current = null;
    showButton();
    render(recordings);
  } catch (err) {
    // 401/403: this page may not record here; 503: no WebRTC on this server.
    $('recordings').hidden = $('record').hidden = true;
  }
}

$('record').addEventListener('click', async () => {
  if (!room) return;
  $('record').disabled = true;
  try {
    if (current) {
      await api('DELETE', `/api/recordings/${current}`);
      current = null;
    } else {
      current = (await api('POST', `/api/rooms/${encodeURIComponent(room.name)}/recordings`)).id;
    }
  } catch (err) {
    document.dispatchEvent(new CustomEvent('demo-status', { detail: `Recording: ${err.message}` }));
  } finally {
    $('record').disabled = false;
    showButton();
    refresh();
  }
});

/** Follows `r` (a joined room, or null when the page left). */
export function followRoom(r) {
  room = r;
  current = null;
  clearInterval(refreshTimer);
  showButton();
  if (!r) {
    $('recordings').hidden = $('record').hidden = true;
    return;
  }
  r.on('recording', () => refresh()); // started, stopped, failed: anyone's, on the room channel
  refreshTimer = setInterval(refresh, 5000); // durations and sizes move while recording
  refresh();
}
