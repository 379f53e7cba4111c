// A small live line chart on a canvas: no dependency, crisp on high-DPI screens, resizes with
// its box. chart.push(values) appends one sample per series; the last `points` are drawn.

export class LineChart {
  constructor(canvas, series, { points = 60, unit = '' } = {}) {
    this.canvas = canvas;
    this.series = series.map((s) => ({ ...s, values: [] }));
    this.points = points;
    this.unit = unit;
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  push(values) {
    this.series.forEach((s, i) => {
      s.values.push(Number(values[i]) || 0);
      if (s.values.length > this.points) s.values.shift();
    });
    this.draw();
  }

  draw() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth, h = c.clientHeight;
    if (!w || !h) return;
    if (c.width !== Math.round(w * dpr)) { c.width = Math.round(w * dpr); c.height = Math.round(h * dpr); }
    const g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const pad = { l: 36, r: 8, t: 8, b: 16 };
    const max = niceMax(Math.max(1, ...this.series.flatMap((s) => s.values)));
    const x = (i) => pad.l + (i / (this.points - 1)) * (w - pad.l - pad.r);
    const y = (v) => h - pad.b - (v / max) * (h - pad.t - pad.b);
    g.font = '11px system-ui, sans-serif';
    g.fillStyle = '#6b7385';
    g.strokeStyle = '#e2e5eb';
    g.lineWidth = 1;
    for (let k = 0; k <= 4; k++) {
      const v = (max * k) / 4, yy = Math.round(y(v)) + 0.5;
      g.beginPath(); g.moveTo(pad.l, yy); g.lineTo(w - pad.r, yy); g.stroke();
      g.fillText(short(v) + this.unit, 2, yy + 4);
    }
    g.fillText(`${this.points}s`, pad.l, h - 3);
    g.fillText('now', w - pad.r - 22, h - 3);
    for (const s of this.series) {
      if (!s.values.length) continue;
      const off = this.points - s.values.length;
      g.beginPath();
      s.values.forEach((v, i) => (i ? g.lineTo(x(off + i), y(v)) : g.moveTo(x(off + i), y(v))));
      g.strokeStyle = s.color; g.lineWidth = 2; g.lineJoin = 'round'; g.stroke();
      g.lineTo(x(off + s.values.length - 1), y(0)); g.lineTo(x(off), y(0)); g.closePath();
      g.globalAlpha = 0.08; g.fillStyle = s.color; g.fill(); g.globalAlpha = 1;
    }
  }
}

function niceMax(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((m) => m >= v);
}

export function short(v) {
  if (v >= 1e9) return `${(v / 1e9).toFixed(1)}G`;
  if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  return `${Math.round(v * 10) / 10}`;
}
