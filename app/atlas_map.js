// The Dataset tab's map (issue #23): every atlas image as a point on a canvas that stays mounted
// across Streamlit reruns. Python (app/atlas_map.py) sends the points of an atlas and colouring as
// packed typed arrays (base64); this code decodes a key once and keeps it, and a run the map caused
// itself (a click) sends only the marks (A, B, A's mined partners). Wheel zooms, drag pans,
// double-click resets; a click marks the point at once and tells Python (trigger "click"); resting
// on a point asks for its thumbnail through a window event that a small component in a fragment
// answers (app/atlas_map.py, _hover_channel). Text from the atlas (class names, ids, predictions)
// goes through textContent only, never HTML.

const DECODED = new Map(); // points key -> decoded arrays, shared by every mount on this page
const STATE = new WeakMap(); // parentElement -> this mount's view, listeners and last data
const GRID = 128; // hover index: GRID x GRID cells over the unit square

function bytes(b64) {
  const raw = atob(b64);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

function decode(points) {
  const xy = new Uint16Array(bytes(points.xy).buffer);
  const colour = bytes(points.colour);
  const label = new Uint16Array(bytes(points.label).buffer);
  const n = colour.length;
  const x = new Float32Array(n), y = new Float32Array(n);
  for (let i = 0; i < n; i++) { x[i] = xy[2 * i] / 65535; y[i] = 1 - xy[2 * i + 1] / 65535; }
  // the hover index: points sorted by cell (a counting sort)
  const cell = new Uint32Array(n), start = new Uint32Array(GRID * GRID + 1);
  for (let i = 0; i < n; i++) {
    const c = Math.min(GRID - 1, (y[i] * GRID) | 0) * GRID + Math.min(GRID - 1, (x[i] * GRID) | 0);
    cell[i] = c; start[c + 1]++;
  }
  for (let c = 0; c < GRID * GRID; c++) start[c + 1] += start[c];
  const fill = start.slice(0, GRID * GRID), items = new Uint32Array(n);
  for (let i = 0; i < n; i++) items[fill[cell[i]]++] = i;
  // the drawing order: points grouped by colour, in the order Python gives (the notable last)
  const counts = new Uint32Array(256);
  for (let i = 0; i < n; i++) counts[colour[i]]++;
  const offset = new Uint32Array(256);
  let at = 0;
  for (const c of points.order) { offset[c] = at; at += counts[c]; }
  const order = new Uint32Array(at), drawn = new Uint8Array(256);
  for (const c of points.order) drawn[c] = 1;
  for (let i = 0; i < n; i++) if (drawn[colour[i]]) order[offset[colour[i]]++] = i;
  return { n, x, y, colour, label, start, items, order };
}

function rgb(hex) {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

function themed(host, name, fallback) {
  const v = getComputedStyle(host).getPropertyValue(name).trim();
  return v || fallback;
}

function setup(parentElement) {
  const root = parentElement.querySelector(".atlas-map");
  const canvas = root.querySelector("canvas");
  const tip = root.querySelector(".tip");
  const s = { root, canvas, tip, view: { k: 1, tx: 0, ty: 0 }, hover: -1, local: {}, data: null, pts: null,
              drag: null, frame: 0, dwell: 0, triggers: null, cards: new Map() };
  s.onCard = (e) => { // a hovered image's thumbnail, id and predictions
    const card = e.detail;
    if (!s.data || card.atlas !== s.data.atlas) return;
    s.cards.set(card.row, card);
    while (s.cards.size > 500) s.cards.delete(s.cards.keys().next().value);
    if (card.row === s.hover) fillCard(s);
  };
  window.addEventListener("apinet-atlas-card", s.onCard);
  s.toScreen = (i) => { // CSS pixels inside the canvas
    const w = canvas.clientWidth, h = canvas.clientHeight, side = Math.min(w, h) * 0.94;
    const ox = (w - side) / 2, oy = (h - side) / 2, v = s.view;
    return [ox + (s.pts.x[i] * v.k + v.tx) * side, oy + (s.pts.y[i] * v.k + v.ty) * side];
  };
  s.toUnit = (px, py) => {
    const w = canvas.clientWidth, h = canvas.clientHeight, side = Math.min(w, h) * 0.94;
    const ox = (w - side) / 2, oy = (h - side) / 2, v = s.view;
    return [((px - ox) / side - v.tx) / v.k, ((py - oy) / side - v.ty) / v.k, side * v.k];
  };
  s.nearest = (px, py, radius) => {
    if (!s.pts) return -1;
    const [ux, uy, scale] = s.toUnit(px, py), r = radius / scale;
    const c0 = Math.max(0, ((ux - r) * GRID) | 0), c1 = Math.min(GRID - 1, ((ux + r) * GRID) | 0);
    const r0 = Math.max(0, ((uy - r) * GRID) | 0), r1 = Math.min(GRID - 1, ((uy + r) * GRID) | 0);
    let best = -1, bestD = r * r;
    for (let row = r0; row <= r1; row++) for (let col = c0; col <= c1; col++) {
      const c = row * GRID + col;
      for (let j = s.pts.start[c]; j < s.pts.start[c + 1]; j++) {
        const i = s.pts.items[j], dx = s.pts.x[i] - ux, dy = s.pts.y[i] - uy, d = dx * dx + dy * dy;
        if (d <= bestD) { bestD = d; best = i; }
      }
    }
    return best;
  };
  // for tests and the benchmark: where image i is on the page (client pixels)
  root.screenOf = (i) => { const r = canvas.getBoundingClientRect(), [x, y] = s.toScreen(i); return [r.left + x, r.top + y]; };
  root.rowAt = (x, y) => { const r = canvas.getBoundingClientRect(); return s.nearest(x - r.left, y - r.top, 8); };
  const redraw = () => { if (!s.frame) s.frame = requestAnimationFrame(() => { s.frame = 0; draw(s); }); };
  s.redraw = redraw;
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const r = canvas.getBoundingClientRect(), [ux, uy] = s.toUnit(e.clientX - r.left, e.clientY - r.top);
    const k = Math.min(400, Math.max(1, s.view.k * Math.exp(-e.deltaY * 0.0015)));
    s.view.tx += ux * (s.view.k - k); s.view.ty += uy * (s.view.k - k); s.view.k = k;
    redraw();
  }, { passive: false });
  canvas.addEventListener("pointerdown", (e) => {
    s.drag = { x: e.clientX, y: e.clientY, moved: 0 };
    canvas.setPointerCapture(e.pointerId); // the drag and its release stay with the map
  });
  canvas.addEventListener("pointerup", (e) => {
    const d = s.drag; s.drag = null;
    if (!d || d.moved > 4) return;
    const r = canvas.getBoundingClientRect(), i = s.nearest(e.clientX - r.left, e.clientY - r.top, 8);
    if (i < 0 || !s.data) return;
    const slot = s.local.next || s.data.next;
    s.local = { [slot]: i, next: slot === "a" ? "b" : "a", at: performance.now() };
    if (slot === "a") { s.local.intra = -1; s.local.inter = -1; }
    redraw();
    s.triggers.setTriggerValue("click", { row: i, slot });
  });
  canvas.addEventListener("pointermove", (e) => {
    const r = canvas.getBoundingClientRect(), px = e.clientX - r.left, py = e.clientY - r.top;
    if (s.drag) {
      const side = Math.min(canvas.clientWidth, canvas.clientHeight) * 0.94;
      s.view.tx += (e.clientX - s.drag.x) / side; s.view.ty += (e.clientY - s.drag.y) / side;
      s.drag.moved += Math.abs(e.clientX - s.drag.x) + Math.abs(e.clientY - s.drag.y);
      s.drag.x = e.clientX; s.drag.y = e.clientY;
      redraw();
      return;
    }
    const i = s.nearest(px, py, 8);
    if (i !== s.hover) { s.hover = i; showTip(s, px, py); redraw(); }
    else if (i >= 0) placeTip(s, px, py);
  });
  canvas.addEventListener("pointerleave", () => { s.hover = -1; tip.hidden = true; redraw(); });
  canvas.addEventListener("dblclick", () => { s.view = { k: 1, tx: 0, ty: 0 }; redraw(); });
  new ResizeObserver(redraw).observe(canvas);
  return s;
}

function placeTip(s, px, py) {
  const w = s.canvas.clientWidth;
  s.tip.style.left = `${px + 14 + 190 > w ? px - 204 : px + 14}px`;
  s.tip.style.top = `${Math.max(0, py - 10)}px`;
}

function showTip(s, px, py) {
  clearTimeout(s.dwell);
  const i = s.hover, tip = s.tip;
  if (i < 0) { tip.hidden = true; return; }
  const lab = s.pts.label[i], d = s.data;
  tip.querySelector(".name").textContent = lab === 65535 ? "unlabelled" : d.classes[lab];
  tip.querySelector(".row").textContent = `row ${i}`;
  fillCard(s);
  tip.hidden = false;
  placeTip(s, px, py);
  s.dwell = setTimeout(() => { // resting on a point: ask Python for its thumbnail and id (app/atlas_map.py)
    if (s.hover === i && !s.cards.has(i)) window.dispatchEvent(new CustomEvent("apinet-atlas-hover", { detail: i }));
  }, 120);
}

function fillCard(s) {
  const card = s.cards.get(s.hover), img = s.tip.querySelector("img"), id = s.tip.querySelector(".id");
  if (card) {
    img.src = card.thumb; img.hidden = false;
    id.textContent = card.id; s.tip.querySelector(".preds").textContent = card.preds;
  } else {
    img.hidden = true; id.textContent = ""; s.tip.querySelector(".preds").textContent = "";
  }
}

function draw(s) {
  const { canvas, pts, data } = s;
  if (!pts || !data) return;
  const dpr = window.devicePixelRatio || 1, w = canvas.clientWidth, h = canvas.clientHeight;
  if (!w || !h) return;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
  }
  const W = canvas.width, H = canvas.height, ctx = canvas.getContext("2d");
  const image = ctx.createImageData(W, H), px = new Uint32Array(image.data.buffer);
  const palette = data.palette.map((c) => { const [r, g, b] = rgb(c); return (255 << 24) | (b << 16) | (g << 8) | r; });
  const base = pts.n > 20000 ? 1.5 : pts.n > 2000 ? 2.5 : 4;
  const half = Math.max(1, Math.round(Math.min(6, base * Math.sqrt(s.view.k)) * dpr / 2));
  const side = Math.min(w, h) * 0.94 * dpr, ox = (W - side) / 2, oy = (H - side) / 2, v = s.view;
  for (let j = 0; j < pts.order.length; j++) {
    const i = pts.order[j];
    const cx = Math.round(ox + (pts.x[i] * v.k + v.tx) * side), cy = Math.round(oy + (pts.y[i] * v.k + v.ty) * side);
    if (cx < -half || cy < -half || cx >= W + half || cy >= H + half) continue;
    const colour = palette[pts.colour[i]];
    for (let yy = Math.max(0, cy - half); yy < Math.min(H, cy + half); yy++) {
      const rowStart = yy * W;
      for (let xx = Math.max(0, cx - half); xx < Math.min(W, cx + half); xx++) px[rowStart + xx] = colour;
    }
  }
  ctx.putImageData(image, 0, 0);
  ctx.save();
  ctx.scale(dpr, dpr);
  const marks = Object.assign({}, data.marks, s.local);
  const at = (i) => s.toScreen(i);
  if (marks.a >= 0) for (const [kind, dash] of [["intra", []], ["inter", [4, 4]]]) {
    const p = marks[kind];
    if (!(p >= 0)) continue;
    const [x0, y0] = at(marks.a), [x1, y1] = at(p);
    ctx.strokeStyle = data.colours.a; ctx.lineWidth = 2; ctx.setLineDash(dash);
    ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
    ctx.setLineDash([]); ctx.fillStyle = data.colours.a;
    ctx.beginPath(); ctx.arc(x1, y1, 4, 0, 2 * Math.PI); ctx.fill();
  }
  const text = themed(s.root, "--st-text-color", "#31333f");
  const halo = themed(s.root, "--st-background-color", "#ffffff");
  ctx.font = "bold 15px sans-serif";
  ctx.lineJoin = "round";
  for (const slot of ["a", "b"]) {
    if (!(marks[slot] >= 0)) continue;
    const [x, y] = at(marks[slot]);
    ctx.strokeStyle = halo; ctx.lineWidth = 6; // a ring and letter that stand out on any cluster
    ctx.beginPath(); ctx.arc(x, y, 9, 0, 2 * Math.PI); ctx.stroke();
    ctx.strokeText(slot.toUpperCase(), x + 11, y - 9);
    ctx.strokeStyle = data.colours[slot]; ctx.lineWidth = 3;
    ctx.beginPath(); ctx.arc(x, y, 9, 0, 2 * Math.PI); ctx.stroke();
    ctx.fillStyle = data.colours[slot]; ctx.fillText(slot.toUpperCase(), x + 11, y - 9);
  }
  if (s.hover >= 0) {
    const [x, y] = at(s.hover);
    ctx.strokeStyle = text; ctx.lineWidth = 1.5;
    ctx.beginPath(); ctx.arc(x, y, 6, 0, 2 * Math.PI); ctx.stroke();
  }
  ctx.restore();
  // what tests and the benchmark read: points drawn, and the marks as drawn (local) and as confirmed
  const ds = s.root.dataset;
  ds.drawn = String(pts.n); ds.key = data.key;
  ds.a = String(marks.a ?? -1); ds.b = String(marks.b ?? -1); ds.next = s.local.next || data.next;
  ds.confirmedA = String(data.marks.a ?? -1); ds.confirmedB = String(data.marks.b ?? -1);
  ds.intra = String(marks.intra ?? -1); ds.inter = String(marks.inter ?? -1);
}

function legend(s) {
  const box = s.root.querySelector(".legend");
  box.replaceChildren();
  for (const [colour, label] of s.data.legend) {
    const item = document.createElement("span"), dot = document.createElement("i");
    dot.style.background = colour;
    item.append(dot, document.createTextNode(label));
    box.append(item);
  }
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let s = STATE.get(parentElement);
  if (!s) { s = setup(parentElement); STATE.set(parentElement, s); }
  s.triggers = { setTriggerValue };
  if (data.points) {
    if (!DECODED.has(data.key)) {
      DECODED.set(data.key, decode(data.points));
      while (DECODED.size > 3) DECODED.delete(DECODED.keys().next().value);
    }
  } else if (!DECODED.has(data.key)) { // a remount after a marks-only run: ask for the points again
    setTriggerValue("need_points", data.key);
    return;
  }
  const legendChanged = !s.data || s.data.key !== data.key;
  s.pts = DECODED.get(data.key);
  const confirmed = (slot) => data.marks[slot] === s.local[slot];
  // a confirmed click (or a newer run from elsewhere) replaces the optimistic marks
  if (!s.local.at || confirmed("a") || confirmed("b") || performance.now() - s.local.at > 15000) s.local = {};
  if (s.data && s.data.atlas !== data.atlas) s.cards.clear();
  s.data = data;
  if (legendChanged) legend(s);
  draw(s);
  return () => { window.removeEventListener("apinet-atlas-card", s.onCard); STATE.delete(parentElement); };
}
