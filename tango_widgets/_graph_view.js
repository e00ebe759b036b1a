// The graph viewer's front-end: draws the plain-data graph of tango_core.graph as SVG.
// Python computes every position; this file only draws, pans, zooms and shows a pop-up with
// a block's inside.  Synced state: graph, selected (a node path "a/b"), zoom, pan, height.

const NS = "http://www.w3.org/2000/svg";
const W = 150, H = 46;
const LANE_FILL = { backbone: "#dbeafe", neck: "#dcfce7", head: "#fde68a", aux: "#f3e8ff" };
const LANE_BAND = { backbone: "#f5f9ff", neck: "#f4fcf6", head: "#fffbeb", aux: "#faf5ff" };

function svg(tag, attrs, parent) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function human(n) {
  if (n === null || n === undefined) return "?";
  const units = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [d, s] of units) if (Math.abs(n) >= d) return (n / d).toPrecision(3) + s;
  return String(n);
}

function shapeText(s) {
  if (!s || !s.length) return "";
  if (Array.isArray(s[0])) return s.map(shapeText).join(", ");
  return s.join("×");
}

function title(node, configGraph) {
  if (node.kind === "input" || node.kind === "output") return node.kind;
  if (configGraph) return `#${node.id} ${node.label}`;
  if (node.kind === "module" && node.name && node.name !== node.type && !/^\d+$/.test(node.name))
    return `${node.name}: ${node.label}`;
  return node.label;
}

function fill(node) {
  if (node.kind === "input" || node.kind === "output") return "#334155";
  if (node.kind === "function") return "#f1f5f9";
  return LANE_FILL[node.lane] || "#e0e7ff";
}

// Draw one graph into group g; returns a map id -> <g> of each node.
function drawGraph(g, graph, onClick, selectedId) {
  const configGraph = (graph.lanes || []).length > 0;
  const byId = {};
  for (const n of graph.nodes) byId[n.id] = n;
  if (configGraph) {
    for (const lane of graph.lanes) {
      const xs = graph.nodes.filter((n) => n.lane === lane).map((n) => n.x);
      if (!xs.length) continue;
      const x0 = Math.min(...xs) - 12, x1 = Math.max(...xs) + W + 12;
      svg("rect", { x: x0, y: -34, width: x1 - x0, height: graph.height + 48, rx: 8,
                    fill: LANE_BAND[lane] || "#f8fafc", stroke: "#e2e8f0" }, g);
      const t = svg("text", { x: x0 + 8, y: -14, "font-size": 13, "font-weight": "bold", fill: "#475569" }, g);
      t.textContent = lane;
      t.setAttribute("class", "tango-graph-lane");
    }
  }
  const edges = svg("g", { class: "tango-graph-edges" }, g);
  for (const e of graph.edges) {
    const a = byId[e.src], b = byId[e.dst];
    if (!a || !b) continue;
    const sx = a.x + W / 2, sy = a.y + H, tx = b.x + W / 2, ty = b.y - 2;
    const mid = (sy + ty) / 2;
    // a long edge inside one column would run behind the nodes between: bend it to the side
    const side = Math.abs(sx - tx) < 1 && ty - sy > H + 40;
    const d = side ? `M${sx},${sy} C${sx + W * 0.75},${sy + 30} ${tx + W * 0.75},${ty - 30} ${tx},${ty}`
                   : `M${sx},${sy} C${sx},${mid} ${tx},${mid} ${tx},${ty}`;
    const p = svg("path", { d, fill: "none",
                            stroke: "#64748b", "stroke-width": 1.2, "marker-end": "url(#tango-arrow)" }, edges);
    const tip = svg("title", {}, p);
    tip.textContent = `${e.src} → ${e.dst}  ${shapeText(e.shape)}`;
  }
  const nodes = {};
  for (const n of graph.nodes) {
    const ng = svg("g", { transform: `translate(${n.x},${n.y})`, class: "tango-graph-node", "data-id": n.id }, g);
    const dark = n.kind === "input" || n.kind === "output";
    svg("rect", { width: W, height: H, rx: n.kind === "function" ? 18 : 6, fill: fill(n),
                  stroke: n.id === selectedId ? "#2563eb" : (n.children ? "#1e293b" : "#94a3b8"),
                  "stroke-width": n.id === selectedId ? 3 : (n.children ? 1.6 : 1) }, ng);
    if (n.repeat > 1) svg("rect", { x: 4, y: 4, width: W, height: H, rx: 6, fill: "none", stroke: "#94a3b8" }, ng)
      .setAttribute("class", "tango-graph-stack");
    const lines = [title(n, configGraph), shapeText(n.shape),
                   n.kind === "module" ? `${human(n.params)} params · ${human(n.flops)}FLOPs` : ""];
    lines.forEach((text, i) => {
      const t = svg("text", { x: 8, y: 14 + 13 * i, "font-size": i === 0 ? 11.5 : 10,
                              "font-weight": i === 0 ? "bold" : "normal",
                              fill: dark ? "#f8fafc" : "#0f172a" }, ng);
      t.textContent = text.length > 26 ? text.slice(0, 25) + "…" : text;
    });
    if (n.children) {
      const plus = svg("text", { x: W - 14, y: 14, "font-size": 12, fill: "#1e293b" }, ng);
      plus.textContent = "⊞";
    }
    const tip = svg("title", {}, ng);
    tip.textContent = `${title(n, configGraph)}\n${shapeText(n.shape)}\n${n.params} params, ${n.flops} FLOPs`
      + (n.children ? "\nclick to see inside" : "");
    ng.style.cursor = "pointer";
    ng.addEventListener("click", (ev) => { ev.stopPropagation(); onClick(n); });
    nodes[n.id] = ng;
  }
  return nodes;
}

function defs(root) {
  const d = svg("defs", {}, root);
  const m = svg("marker", { id: "tango-arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7,
                            markerHeight: 7, orient: "auto-start-reverse" }, d);
  svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#64748b" }, m);
}

function findPath(graph, path) {
  // [node, node, ...] along an id path through nested insides
  const out = [];
  let g = graph;
  for (const id of path) {
    if (!g) return null;
    const n = g.nodes.find((x) => x.id === id);
    if (!n) return null;
    out.push(n);
    g = n.children;
  }
  return out;
}

function render({ model, el }) {
  el.classList.add("tango-graph");
  const box = document.createElement("div");
  box.className = "tango-graph-box";
  el.appendChild(box);
  const bar = document.createElement("div");
  bar.className = "tango-graph-bar";
  box.appendChild(bar);
  const info = document.createElement("span");
  info.className = "tango-graph-info";
  const button = (label, cls, fn) => {
    const b = document.createElement("button");
    b.textContent = label;
    b.className = "tango-graph-btn " + cls;
    b.addEventListener("click", fn);
    bar.appendChild(b);
    return b;
  };
  const view = document.createElement("div");
  view.className = "tango-graph-view";
  box.appendChild(view);
  const root = svg("svg", { width: "100%", height: "100%" }, view);
  defs(root);
  const stage = svg("g", {}, root);
  const popup = document.createElement("div");
  popup.className = "tango-graph-popup";
  popup.style.display = "none";
  box.appendChild(popup);

  const setView = (z, p, sync) => {
    stage.setAttribute("transform", `translate(${p[0]},${p[1]}) scale(${z})`);
    if (sync) { model.set("zoom", z); model.set("pan", p); model.save_changes(); }
  };
  const current = () => [model.get("zoom"), model.get("pan")];
  const zoomBy = (f, cx, cy) => {
    let [z, p] = current();
    const nz = Math.min(4, Math.max(0.05, z * f));
    cx = cx ?? view.clientWidth / 2; cy = cy ?? view.clientHeight / 2;
    p = [cx - (cx - p[0]) * nz / z, cy - (cy - p[1]) * nz / z];
    setView(nz, p, true);
  };
  const fit = () => {
    const g = model.get("graph");
    const w = view.clientWidth || 800;
    const z = Math.min(1, (w - 40) / Math.max(1, g.width || 1));
    setView(z, [20, 44 * z], true);
  };
  button("−", "tango-graph-zoom-out", () => zoomBy(1 / 1.25));
  button("+", "tango-graph-zoom-in", () => zoomBy(1.25));
  button("fit", "tango-graph-fit", fit);
  bar.appendChild(info);

  const drawMain = () => {
    const g = model.get("graph");
    stage.replaceChildren();
    const sel = (model.get("selected") || "").split("/").filter(Boolean);
    drawGraph(stage, g, (n) => { model.set("selected", n.id); model.save_changes(); }, sel[0]);
    info.textContent = ` ${g.name} · ${human(g.params)} params · ${human(g.flops)}FLOPs`
      + ` · input ${shapeText(g.input_shape)}${g.approximate ? " · edges approximate (not traceable)" : ""}`;
    view.style.height = model.get("height") + "px";
    setView(...current(), false);
  };

  const drawPopup = () => {
    const path = (model.get("selected") || "").split("/").filter(Boolean);
    const nodes = path.length ? findPath(model.get("graph"), path) : null;
    if (!nodes) { popup.style.display = "none"; popup.replaceChildren(); return; }
    popup.style.display = "block";
    popup.replaceChildren();
    const head = document.createElement("div");
    head.className = "tango-graph-crumbs";
    nodes.forEach((n, i) => {
      const a = document.createElement("a");
      a.textContent = (i ? " › " : "") + n.label;
      a.href = "#";
      a.addEventListener("click", (ev) => {
        ev.preventDefault();
        model.set("selected", path.slice(0, i + 1).join("/")); model.save_changes();
      });
      head.appendChild(a);
    });
    const close = document.createElement("button");
    close.textContent = "×";
    close.className = "tango-graph-close";
    close.addEventListener("click", () => { model.set("selected", ""); model.save_changes(); });
    popup.appendChild(close);
    popup.appendChild(head);
    const n = nodes[nodes.length - 1];
    const rows = [["type", n.type], ["name", n.name], ["output", shapeText(n.shape)],
                  ["parameters", n.params.toLocaleString()], ["FLOPs", n.flops.toLocaleString()]];
    if (n.repeat > 1) rows.push(["repeated", `${n.repeat}× (${n.members.join(", ")})`]);
    for (const [k, v] of Object.entries(n.args || {})) rows.push([k, JSON.stringify(v)]);
    const table = document.createElement("table");
    table.className = "tango-graph-details";
    for (const [k, v] of rows) {
      const tr = document.createElement("tr");
      const a = document.createElement("td"); a.textContent = k;
      const b = document.createElement("td"); b.textContent = v;
      tr.append(a, b);
      table.appendChild(tr);
    }
    popup.appendChild(table);
    if (n.children) {
      const cap = document.createElement("div");
      cap.className = "tango-graph-inside-title";
      cap.textContent = n.repeat > 1 ? `inside (one of ${n.repeat})` : "inside";
      popup.appendChild(cap);
      const inner = n.children;
      const holder = document.createElement("div");
      holder.className = "tango-graph-inside";
      const s = svg("svg", {}, holder);
      defs(s);
      const scale = Math.min(1, 330 / Math.max(1, inner.width));
      s.setAttribute("width", Math.max(1, inner.width * scale) + 10);
      s.setAttribute("height", Math.max(1, inner.height * scale) + 10);
      const g = svg("g", { transform: `translate(5,5) scale(${scale})` }, s);
      drawGraph(g, inner, (c) => {
        model.set("selected", [...path, c.id].join("/")); model.save_changes();
      }, null);
      popup.appendChild(holder);
    }
  };

  // pan by dragging the background, zoom with ctrl + wheel (a plain wheel scrolls the view)
  let drag = null;
  view.addEventListener("mousedown", (ev) => {
    if (ev.button !== 0) return;
    drag = { x: ev.clientX, y: ev.clientY, p: current()[1] };
  });
  const move = (ev) => {
    if (!drag) return;
    setView(current()[0], [drag.p[0] + ev.clientX - drag.x, drag.p[1] + ev.clientY - drag.y], false);
  };
  const up = (ev) => {
    if (!drag) return;
    const moved = Math.abs(ev.clientX - drag.x) + Math.abs(ev.clientY - drag.y) > 2;
    const p = [drag.p[0] + ev.clientX - drag.x, drag.p[1] + ev.clientY - drag.y];
    drag = null;
    if (moved) setView(current()[0], p, true);
  };
  window.addEventListener("mousemove", move);
  window.addEventListener("mouseup", up);
  view.addEventListener("wheel", (ev) => {
    const r = view.getBoundingClientRect();
    if (ev.ctrlKey || ev.metaKey) {
      ev.preventDefault();
      zoomBy(ev.deltaY < 0 ? 1.1 : 1 / 1.1, ev.clientX - r.left, ev.clientY - r.top);
    } else {
      const [z, p] = current();
      const g = model.get("graph");
      const ny = p[1] - ev.deltaY;
      const lo = Math.min(0, view.clientHeight - (g.height + 80) * z);
      if ((ev.deltaY > 0 && p[1] > lo) || (ev.deltaY < 0 && p[1] < 44 * z)) {
        ev.preventDefault();
        setView(z, [p[0] - ev.deltaX, Math.max(lo, Math.min(44 * z, ny))], true);
      }
    }
  }, { passive: false });

  model.on("change:graph", () => { drawMain(); drawPopup(); });
  model.on("change:selected", () => { drawMain(); drawPopup(); });
  model.on("change:zoom", () => setView(...current(), false));
  model.on("change:pan", () => setView(...current(), false));
  model.on("change:height", drawMain);
  drawMain();
  drawPopup();
  if (model.get("zoom") <= 0) requestAnimationFrame(fit);
  return () => {
    window.removeEventListener("mousemove", move);
    window.removeEventListener("mouseup", up);
  };
}

export default { render };
