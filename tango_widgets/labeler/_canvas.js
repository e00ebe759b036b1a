// The labeler's canvas: draws the image once decoded and the shapes on top; turns mouse and keys
// into small messages for Python ({op: ...}).  During a drag only the browser redraws; Python
// gets one message when the gesture ends and answers with the new shapes.

const HANDLE = 6;          // handle half-size in screen px
const DRAG_MIN = 2;        // screen px before a press counts as a drag
const HANDLED_KEYS = new Set(["Delete", "Backspace", "ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Tab",
  "Enter", "Escape", "PageUp", "PageDown", "n", "p", "u", "a", "v", "b", "g", "N", "P", "U", "A", "V", "B", "G"]);

function pointInPolygon(x, y, pts) {
  let inside = false;
  for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) {
    const [xi, yi] = pts[i], [xj, yj] = pts[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

function rgba(hex, a) {
  const n = parseInt((hex || "#ff0000").slice(1), 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${a})`;
}

function render({ model, el }) {
  el.classList.add("tango-labeler-root");
  const wrap = document.createElement("div");
  wrap.className = "tango-labeler-wrap";
  wrap.tabIndex = 0;
  // keep JupyterLab / Notebook shortcuts (1 = heading, z = undo cell op...) away while labelling
  wrap.dataset.lmSuppressShortcuts = "true";
  const canvas = document.createElement("canvas");
  canvas.className = "tango-labeler-surface";
  const hud = document.createElement("div");
  hud.className = "tango-labeler-hud";
  wrap.append(canvas, hud);
  el.appendChild(wrap);
  const ctx = canvas.getContext("2d");

  let bitmap = null, loading = 0, frame = 0, space = false;
  let drag = null;        // the gesture in progress
  let preview = null;     // a finished gesture shown until Python's answer arrives
  let poly = null;        // polygon being drawn: [[x, y], ...] in image px
  let cursor = null;      // last mouse position in image px
  let selVertex = null;   // {id, index} of the clicked vertex
  const stats = { draws: 0, last: 0, times: [] };

  const size = () => model.get("image_size");
  const view = () => ({ z: model.get("zoom"), x: model.get("pan")[0], y: model.get("pan")[1] });
  const toImage = (sx, sy) => { const v = view(); return [(sx - v.x) / v.z, (sy - v.y) / v.z]; };
  const toScreen = (ix, iy) => { const v = view(); return [ix * v.z + v.x, iy * v.z + v.y]; };
  const send = (msg) => model.send(msg);
  const shapes = () => model.get("shapes");
  const byId = (id) => shapes().find((s) => s.id === id);
  const color = (cls) => (model.get("classes")[cls] || {}).color || "#ff0000";

  function setView(z, x, y, sync) {
    model.set("zoom", z);
    model.set("pan", [x, y]);
    if (sync) model.save_changes();
    schedule();
  }

  function fit() {
    const [w, h] = size();
    if (!w || !h) return;
    const cw = canvas.clientWidth || 800, ch = canvas.clientHeight || model.get("height");
    const z = Math.min(cw / w, ch / h) * 0.98;
    setView(z, (cw - w * z) / 2, (ch - h * z) / 2, true);
  }

  function resize() {
    const dpr = window.devicePixelRatio || 1;
    const cw = wrap.clientWidth || 800, ch = model.get("height");
    canvas.style.width = cw + "px";
    canvas.style.height = ch + "px";
    canvas.width = Math.round(cw * dpr);
    canvas.height = Math.round(ch * dpr);
    schedule();
  }

  function loadImage() {
    const data = model.get("image");
    const token = ++loading;
    if (!data || !data.byteLength) { bitmap = null; schedule(); return; }
    createImageBitmap(new Blob([data])).then((bm) => {
      if (token !== loading) return;
      bitmap = bm;
      fit();
      wrap.dataset.imageId = model.get("image_id");
      schedule();
    }).catch((err) => { hud.textContent = "cannot decode this image: " + err; });
  }

  // --- drawing -------------------------------------------------------------------------------
  function schedule() {
    if (!frame) frame = requestAnimationFrame(() => { frame = 0; draw(); });
  }

  function boxOf(s) {
    if (preview && preview.id === s.id) return preview.box || s.box;
    if (drag && drag.id === s.id && drag.box) return drag.box;
    return s.box;
  }

  function pointsOf(s) {
    if (preview && preview.id === s.id && preview.points) return preview.points;
    if (drag && drag.id === s.id && drag.points) return drag.points;
    return s.points;
  }

  // add one shape's outline to a path (screen px); returns where its name goes
  function addShape(path, s, v) {
    const z = v.z, ox = v.x, oy = v.y;
    if (s.kind === "box") {
      const b = boxOf(s);
      const x1 = b[0] * z + ox, y1 = b[1] * z + oy;
      path.rect(x1, y1, (b[2] - b[0]) * z, (b[3] - b[1]) * z);
      return [x1, y1, (b[2] - b[0]) * z];
    }
    const pts = pointsOf(s);
    let lo = Infinity, hi = -Infinity;
    for (let i = 0; i < pts.length; i++) {
      const x = pts[i][0] * z + ox, y = pts[i][1] * z + oy;
      if (i) path.lineTo(x, y); else path.moveTo(x, y);
      if (x < lo) lo = x;
      if (x > hi) hi = x;
    }
    path.closePath();
    return [pts[0][0] * z + ox, pts[0][1] * z + oy, hi - lo];
  }

  // Shapes of one class share one path: one fill and one stroke per class, not per shape.
  function drawShapes(g, list, emphasis) {
    if (!list.length) return;
    const classes = model.get("classes"), v = view();
    const groups = new Map();
    for (const s of list) {
      const key = `${s.cls}|${s.suggestion ? 1 : 0}`;
      let grp = groups.get(key);
      if (!grp) groups.set(key, grp = { cls: s.cls, suggestion: s.suggestion, path: new Path2D(), names: [] });
      const [tx, ty, width] = addShape(grp.path, s, v);
      if (width >= 28) {  // names of tiny shapes would only cover them
        const name = (classes[s.cls] || {}).name || String(s.cls);
        grp.names.push([s.suggestion ? `${name} ${(s.score ?? 0).toFixed(2)}?` : name, tx + 3, ty + 2]);
      }
    }
    g.font = "12px sans-serif";
    g.textBaseline = "top";
    for (const grp of groups.values()) {
      const c = (classes[grp.cls] || {}).color || "#ff0000";
      g.setLineDash(grp.suggestion ? [6, 4] : []);
      g.fillStyle = rgba(c, emphasis ? 0.28 : 0.16);
      g.fill(grp.path);
      g.lineWidth = emphasis ? 3 : 2;
      g.strokeStyle = c;
      g.stroke(grp.path);
      g.fillStyle = c;
      for (const [text, x, y] of grp.names) g.fillText(text, x, y);
    }
    g.setLineDash([]);
  }

  // The shapes nobody is touching, drawn once into an offscreen layer and reused until the
  // shapes, the view or the selection change: a drag redraws one shape, not all of them.
  const layer = document.createElement("canvas");
  let layerKey = [];
  function layerFor(moving) {
    const key = [shapes(), model.get("zoom"), model.get("pan"), model.get("classes"), model.get("selected"),
                 moving, canvas.width, canvas.height];
    if (key.length === layerKey.length && key.every((k, i) => k === layerKey[i])) return layer;
    layerKey = key;
    layer.width = canvas.width;
    layer.height = canvas.height;
    const g = layer.getContext("2d");
    const dpr = window.devicePixelRatio || 1;
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, layer.width, layer.height);
    const selected = model.get("selected");
    drawShapes(g, shapes().filter((s) => s.id !== moving && s.id !== selected), false);
    return layer;
  }

  function handles(s) {
    // [kind, index or name, x, y] in screen px
    if (s.kind === "box") {
      const b = boxOf(s);
      const [x1, y1] = toScreen(b[0], b[1]), [x2, y2] = toScreen(b[2], b[3]);
      const mx = (x1 + x2) / 2, my = (y1 + y2) / 2;
      return [["h", "nw", x1, y1], ["h", "n", mx, y1], ["h", "ne", x2, y1], ["h", "e", x2, my],
              ["h", "se", x2, y2], ["h", "s", mx, y2], ["h", "sw", x1, y2], ["h", "w", x1, my]];
    }
    const pts = pointsOf(s).map((p) => toScreen(p[0], p[1]));
    const out = pts.map(([x, y], i) => ["v", i, x, y]);
    pts.forEach(([x, y], i) => {
      const [nx, ny] = pts[(i + 1) % pts.length];
      out.push(["m", i + 1, (x + nx) / 2, (y + ny) / 2]);
    });
    return out;
  }

  function draw() {
    const t0 = performance.now();
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const cw = canvas.width / dpr, ch = canvas.height / dpr;
    ctx.fillStyle = "#1e293b";
    ctx.fillRect(0, 0, cw, ch);
    const v = view(), [w, h] = size();
    if (bitmap) {
      ctx.imageSmoothingEnabled = v.z < 1;
      ctx.drawImage(bitmap, v.x, v.y, w * v.z, h * v.z);
    }
    const classes = model.get("classes"), selected = model.get("selected");
    const moving = (drag && drag.id) || (preview && preview.id) || null;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.drawImage(layerFor(moving), 0, 0);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    if (moving || selected) {
      const list = shapes();
      drawShapes(ctx, list.filter((s) => s.id === moving && s.id !== selected), false);
      drawShapes(ctx, list.filter((s) => s.id === selected), true);
    }
    const sel = selected && byId(selected);
    if (sel) {
      for (const [kind, idx, x, y] of handles(sel)) {
        ctx.beginPath();
        if (kind === "m") ctx.arc(x, y, HANDLE - 2, 0, 2 * Math.PI);
        else ctx.rect(x - HANDLE / 2 - 1, y - HANDLE / 2 - 1, HANDLE + 2, HANDLE + 2);
        const picked = selVertex && selVertex.id === sel.id && kind === "v" && selVertex.index === idx;
        ctx.fillStyle = kind === "m" ? "rgba(255,255,255,0.6)" : (picked ? "#facc15" : "#ffffff");
        ctx.fill();
        ctx.lineWidth = 1;
        ctx.strokeStyle = "#0f172a";
        ctx.stroke();
      }
    }
    if (drag && drag.kind === "new-box") {
      const [x1, y1] = toScreen(drag.start[0], drag.start[1]), [x2, y2] = toScreen(drag.end[0], drag.end[1]);
      ctx.setLineDash([5, 3]);
      ctx.strokeStyle = color(model.get("current_class"));
      ctx.lineWidth = 2;
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      ctx.setLineDash([]);
    }
    if (poly) {
      const pts = poly.map((p) => toScreen(p[0], p[1]));
      ctx.beginPath();
      pts.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      if (cursor) ctx.lineTo(...toScreen(cursor[0], cursor[1]));
      ctx.strokeStyle = color(model.get("current_class"));
      ctx.lineWidth = 2;
      ctx.stroke();
      for (const [x, y] of pts) ctx.fillRect(x - 3, y - 3, 6, 6);
    }
    if (model.get("task") === "classification") {
      const lab = model.get("label") || {};
      let text = "label: " + (lab.cls === null || lab.cls === undefined ? "none (press 1-9)" : (classes[lab.cls] || {}).name);
      if (lab.suggested && (lab.cls === null || lab.cls === undefined))
        text += ` · suggested: ${(classes[lab.suggested[0]] || {}).name} ${lab.suggested[1].toFixed(2)} (a accepts)`;
      ctx.font = "bold 14px sans-serif";
      const tw = ctx.measureText(text).width;
      ctx.fillStyle = "rgba(15,23,42,0.75)";
      ctx.fillRect(6, 6, tw + 12, 22);
      ctx.fillStyle = lab.cls === null || lab.cls === undefined ? "#fbbf24" : color(lab.cls);
      ctx.fillText(text, 12, 10);
    }
    const cls = (classes[model.get("current_class")] || {}).name || "";
    hud.textContent = `${Math.round(v.z * 100)}% · ${model.get("tool")} · class ${cls}`;
    const dt = performance.now() - t0;
    stats.draws += 1;
    stats.last = dt;
    stats.times.push(dt);
    if (stats.times.length > 200) stats.times.shift();
    wrap.dataset.draws = String(stats.draws);
    wrap.dataset.selected = selected;
  }

  // --- hit testing -------------------------------------------------------------------------
  function local(ev) {
    const r = canvas.getBoundingClientRect();
    return [ev.clientX - r.left, ev.clientY - r.top];
  }

  function hitHandle(s, sx, sy) {
    for (const hd of handles(s)) if (Math.abs(hd[2] - sx) <= HANDLE + 1 && Math.abs(hd[3] - sy) <= HANDLE + 1) return hd;
    return null;
  }

  function hitShape(ix, iy) {
    const list = shapes();
    for (let i = list.length - 1; i >= 0; i--) {
      const s = list[i];
      if (s.kind === "box") {
        const b = s.box;
        if (ix >= b[0] && ix <= b[2] && iy >= b[1] && iy <= b[3]) return s;
      } else if (pointInPolygon(ix, iy, s.points)) return s;
    }
    return null;
  }

  function resized(orig, handle, ix, iy) {
    let [x1, y1, x2, y2] = orig;
    if (handle.includes("w")) x1 = ix;
    if (handle.includes("e")) x2 = ix;
    if (handle.includes("n")) y1 = iy;
    if (handle.includes("s")) y2 = iy;
    return [Math.min(x1, x2), Math.min(y1, y2), Math.max(x1, x2), Math.max(y1, y2)];
  }

  function finishPolygon() {
    if (!poly) return;
    const pts = poly.filter((p, i) => i === 0 || Math.hypot(p[0] - poly[i - 1][0], p[1] - poly[i - 1][1]) * view().z > 1);
    poly = null;
    if (pts.length >= 3) send({ op: "add_polygon", points: pts });
    schedule();
  }

  // --- mouse ---------------------------------------------------------------------------------
  canvas.addEventListener("mousedown", (ev) => {
    wrap.focus({ preventScroll: true });
    const [sx, sy] = local(ev), [ix, iy] = toImage(sx, sy);
    const v = view();
    if (ev.button === 1 || (ev.button === 0 && space)) {
      drag = { kind: "pan", sx, sy, x: v.x, y: v.y };
      ev.preventDefault();
      return;
    }
    if (ev.button !== 0) return;
    const tool = model.get("tool");
    if (tool === "polygon" && poly) {
      const [fx, fy] = toScreen(poly[0][0], poly[0][1]);
      if (poly.length >= 3 && Math.hypot(fx - sx, fy - sy) <= HANDLE + 2) finishPolygon();
      else { poly.push([ix, iy]); schedule(); }
      return;
    }
    const sel = model.get("selected") && byId(model.get("selected"));
    const hd = sel && hitHandle(sel, sx, sy);
    if (hd) {
      if (hd[0] === "h") drag = { kind: "resize", id: sel.id, handle: hd[1], orig: sel.box.slice(), sx, sy };
      else if (hd[0] === "v" && ev.altKey) { send({ op: "delete_vertex", id: sel.id, index: hd[1] }); selVertex = null; }
      else if (hd[0] === "v") { drag = { kind: "vertex", id: sel.id, index: hd[1], sx, sy }; selVertex = { id: sel.id, index: hd[1] }; }
      else drag = { kind: "insert", id: sel.id, index: hd[1], sx, sy };
      schedule();
      return;
    }
    selVertex = null;
    if (tool === "select" || model.get("task") === "classification") {
      const hit = hitShape(ix, iy);
      if (hit) {
        if (hit.id !== model.get("selected")) send({ op: "select", id: hit.id });
        drag = { kind: "move", id: hit.id, start: [ix, iy], sx, sy, orig: hit };
      } else {
        if (model.get("selected")) send({ op: "select", id: "" });
        drag = { kind: "pan", sx, sy, x: v.x, y: v.y };
      }
      return;
    }
    if (tool === "box") drag = { kind: "new-box", start: [ix, iy], end: [ix, iy], sx, sy };
    else if (tool === "polygon") { poly = [[ix, iy]]; schedule(); }
  });

  const onMove = (ev) => {
    const [sx, sy] = local(ev), [ix, iy] = toImage(sx, sy);
    cursor = [ix, iy];
    if (poly) schedule();
    if (!drag) return;
    drag.moved = drag.moved || Math.abs(sx - drag.sx) + Math.abs(sy - drag.sy) > DRAG_MIN;
    if (drag.kind === "pan") { setView(view().z, drag.x + sx - drag.sx, drag.y + sy - drag.sy, false); return; }
    if (drag.kind === "new-box") drag.end = [ix, iy];
    else if (drag.kind === "resize") drag.box = resized(drag.orig, drag.handle, ix, iy);
    else if (drag.kind === "move") {
      const dx = ix - drag.start[0], dy = iy - drag.start[1], s = drag.orig;
      if (s.kind === "box") drag.box = [s.box[0] + dx, s.box[1] + dy, s.box[2] + dx, s.box[3] + dy];
      else drag.points = s.points.map((p) => [p[0] + dx, p[1] + dy]);
      drag.dx = dx; drag.dy = dy;
    } else if (drag.kind === "vertex") {
      const s = byId(drag.id);
      drag.points = s.points.map((p, i) => (i === drag.index ? [ix, iy] : p));
      drag.at = [ix, iy];
    } else if (drag.kind === "insert") {
      const s = byId(drag.id);
      drag.points = [...s.points.slice(0, drag.index), [ix, iy], ...s.points.slice(drag.index)];
      drag.at = [ix, iy];
    }
    schedule();
  };

  const onUp = () => {
    if (!drag) return;
    const d = drag;
    drag = null;
    if (d.kind === "pan") { if (d.moved) model.save_changes(); return; }
    if (!d.moved) { schedule(); return; }
    if (d.kind === "new-box") {
      const [a, b] = [d.start, d.end];
      send({ op: "add_box", box: [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])] });
    } else if (d.kind === "resize") {
      preview = { id: d.id, box: d.box };
      send({ op: "set_box", id: d.id, box: d.box });
    } else if (d.kind === "move") {
      preview = { id: d.id, box: d.box, points: d.points };
      send({ op: "move", id: d.id, dx: d.dx, dy: d.dy });
    } else if (d.kind === "vertex") {
      preview = { id: d.id, points: d.points };
      send({ op: "move_vertex", id: d.id, index: d.index, x: d.at[0], y: d.at[1] });
    } else if (d.kind === "insert") {
      preview = { id: d.id, points: d.points };
      selVertex = { id: d.id, index: d.index };
      send({ op: "insert_vertex", id: d.id, index: d.index, x: d.at[0], y: d.at[1] });
    }
    schedule();
  };
  window.addEventListener("mousemove", onMove);
  window.addEventListener("mouseup", onUp);

  canvas.addEventListener("dblclick", (ev) => {
    if (poly) { ev.preventDefault(); finishPolygon(); }
  });

  canvas.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const [sx, sy] = local(ev), v = view();
    const z = Math.min(40, Math.max(0.02, v.z * Math.pow(1.0015, -ev.deltaY)));
    setView(z, sx - (sx - v.x) * z / v.z, sy - (sy - v.y) * z / v.z, false);
    clearTimeout(wrap._zoomSync);
    wrap._zoomSync = setTimeout(() => model.save_changes(), 150);
  }, { passive: false });

  // --- keys ------------------------------------------------------------------------------------
  wrap.addEventListener("keydown", (ev) => {
    ev.stopPropagation();
    const key = ev.key, ctrl = ev.ctrlKey || ev.metaKey;
    if (key === " ") { space = true; ev.preventDefault(); return; }
    if (poly && key === "Escape") { poly = null; schedule(); ev.preventDefault(); return; }
    if (poly && key === "Enter") { finishPolygon(); ev.preventDefault(); return; }
    if (poly && key === "Backspace") { poly.pop(); if (!poly.length) poly = null; schedule(); ev.preventDefault(); return; }
    if (!ctrl && (key === "f" || key === "F")) { fit(); ev.preventDefault(); return; }
    if (!ctrl && (key === "+" || key === "=" || key === "-")) {
      const v = view(), f = key === "-" ? 1 / 1.25 : 1.25, cx = canvas.clientWidth / 2, cy = canvas.clientHeight / 2;
      setView(v.z * f, cx - (cx - v.x) * f, cy - (cy - v.y) * f, true);
      ev.preventDefault();
      return;
    }
    if ((key === "Delete" || key === "Backspace") && selVertex && selVertex.id === model.get("selected")) {
      send({ op: "delete_vertex", id: selVertex.id, index: selVertex.index });
      selVertex = null;
      ev.preventDefault();
      return;
    }
    const digit = /^[0-9]$/.test(key);
    if (digit || HANDLED_KEYS.has(key) || (ctrl && /^[zZyY]$/.test(key))) {
      ev.preventDefault();
      send({ op: "key", key, ctrl, shift: ev.shiftKey });
    }
  });
  wrap.addEventListener("keyup", (ev) => { if (ev.key === " ") space = false; });

  // --- state from Python --------------------------------------------------------------------------
  model.on("change:image", loadImage);
  model.on("change:image_id", loadImage);
  model.on("change:shapes", () => { preview = null; schedule(); });
  for (const name of ["selected", "classes", "label", "current_class", "tool", "zoom", "pan"])
    model.on(`change:${name}`, schedule);
  model.on("change:height", resize);
  model.on("msg:custom", (msg) => { if (msg && msg.cmd === "fit") fit(); });
  const observer = new ResizeObserver(() => resize());
  observer.observe(wrap);
  resize();
  loadImage();

  // for tests and benchmarks: draw synchronously, read timings, map coordinates
  el.tangoLabeler = { draw, stats, toImage, toScreen, fit, canvas, invalidate: () => { layerKey = []; } };
  wrap.tangoLabeler = el.tangoLabeler;

  return () => {
    observer.disconnect();
    window.removeEventListener("mousemove", onMove);
    window.removeEventListener("mouseup", onUp);
  };
}

export default { render };
