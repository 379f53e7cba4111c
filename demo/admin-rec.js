// The rooms panel's recordings: each room's recordings from the documented recording API
// (`GET /api/recordings?room=`, docs/recording.md), with a download per file, and Start (tracks,
// the room's audio mix, or composed: the grid and the mix in one WebM) and Stop through the same API. The page holds the API key or the
// admin password, which that API takes as any script's key.
//
// Stable hooks: #rooms .room[data-room] button[data-record] (value: tracks | mix | composed);
//   .room tr.rec[data-rec][data-state] button[data-stop]; a[data-file]

/** Each room's recordings, newest first: `Map(room → [recording])`. */
export async function loadRecordings(api, rooms) {
  const lists = await Promise.all(rooms.map((r) => api(`/api/recordings?room=${encodeURIComponent(r)}`)
    .then((x) => x.recordings).catch(() => null)));
  return new Map(rooms.map((r, i) => [r, lists[i]]));
}

const STATE_COLOR = { recording: '#d64545', stopped: '#1f9d55', failed: '#b3446c', interrupted: '#c98a00' };

/** The recordings block of one room (`list` null: the API refused or recording is off). */
export function renderRecordings(room, list, esc) {
  const running = list?.some((r) => r.state === 'recording');
  const actions = list === null ? '' : `<span class="rec-actions">
      <button type="button" class="small" data-record="tracks" data-room="${esc(room)}" title="Every track in its own file">● Record</button>
      <button type="button" class="ghost small" data-record="mix" data-room="${esc(room)}" title="The room's audio mix in one Ogg/Opus file">● Record mix</button>
      <button type="button" class="ghost small" data-record="composed" data-room="${esc(room)}" title="The room's video grid and its audio mix in one WebM file">● Record composed</button>
    </span>`;
  const head = `<h4 class="rec-head">Recordings ${running ? '<span class="rec-dot" title="recording"></span>' : ''}${actions}</h4>`;
  if (list === null) return `${head}<p class="hint">Recording is not available here.</p>`;
  if (!list.length) return `${head}<p class="hint">No recordings of this room yet.</p>`;
  const rows = list.map((r) => {
    const kinds = r.mix ? 'room mix' : r.composition ? 'composed' : [...new Set(r.files.map((f) => f.kind))].join(' + ') || '–';
    const files = r.files.map((f) => `<a href="${esc(f.url)}" data-file="${esc(f.name)}" download="${esc(f.name)}" title="${esc(f.name)}">${esc(fileLabel(f))}</a>`).join('') || '<span class="hint">waiting for media</span>';
    const why = r.reason && r.reason !== r.state && r.state !== 'recording' ? ` <span class="hint">${esc(r.reason)}</span>` : '';
    return `<tr class="rec" data-rec="${esc(r.id)}" data-state="${esc(r.state)}">
      <td><span class="tag" style="--c:${STATE_COLOR[r.state] || '#999'}">${esc(r.state)}</span>${why}</td>
      <td>${new Date(r.started).toLocaleTimeString()}</td><td class="num">${duration(r.duration_ms)}</td>
      <td class="num">${size(r.bytes)}</td><td>${r.files.length} · ${esc(kinds)}</td>
      <td class="files">${files}</td>
      <td>${r.state === 'recording' ? `<button type="button" class="small danger" data-stop="${esc(r.id)}">■ Stop</button>` : ''}</td></tr>`;
  }).join('');
  return `${head}<div class="scroll"><table class="recs"><thead><tr><th>state</th><th>started</th><th class="num">duration</th><th class="num">size</th><th>tracks</th><th>files</th><th></th></tr></thead><tbody>${rows}</tbody></table></div>`;
}

/** Wires the buttons and downloads of `container` (rendered anew every second: delegation). */
export function wireRecordings(container, { api, key, status, changed }) {
  container.addEventListener('click', async (e) => {
    const record = e.target.closest('button[data-record]');
    const stop = e.target.closest('button[data-stop]');
    const file = e.target.closest('a[data-file]');
    try {
      if (record) {
        record.disabled = true;
        const how = record.dataset.record;
        const body = how === 'mix' ? { mix: true } : how === 'composed' ? { composed: true } : {};
        const r = await api(`/api/rooms/${encodeURIComponent(record.dataset.room)}/recordings`, { method: 'POST', body });
        status(`recording ${record.dataset.room}${how === 'tracks' ? '' : ` (${how})`}: ${r.id}`);
        await changed();
      } else if (stop) {
        stop.disabled = true;
        await api(`/api/recordings/${stop.dataset.stop}`, { method: 'DELETE' });
        status(`stopped recording ${stop.dataset.stop}`);
        await changed();
      } else if (file) {
        // A link cannot send the key: fetch with it, and save what came.
        e.preventDefault();
        const r = await fetch(file.getAttribute('href'), { headers: { 'X-API-Key': key() } });
        if (!r.ok) throw new Error(`download: ${r.status}`);
        const url = URL.createObjectURL(await r.blob());
        const a = Object.assign(document.createElement('a'), { href: url, download: file.dataset.file });
        a.click();
        setTimeout(() => URL.revokeObjectURL(url), 10_000);
      }
    } catch (err) {
      status(err.message);
      if (record) record.disabled = false;
      if (stop) stop.disabled = false;
    }
  });
}

function fileLabel(f) {
  if (f.track === 'mix') return '♪ room mix';
  if (f.label === 'composed') return '▶♪ composed';
  return `${f.kind === 'video' ? '▶' : '♪'} ${f.participant_name || f.participant} · ${f.label}`;
}
function duration(ms) { const s = Math.round(ms / 1000); return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`; }
function size(n) { return n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : n >= 1e3 ? `${Math.round(n / 1e3)} kB` : `${n} B`; }
