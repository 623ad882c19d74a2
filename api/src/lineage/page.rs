//! `GET /lineage[?nodeId=…&depth=…]`: a self-contained page (no CDN, no network beyond this
//! API) that draws the lineage graph Marquez's `GET /api/v1/lineage?nodeId=…` answers — here the
//! API's own Marquez-compatible store ([`crate::lineage::store`]); pointed at a real Marquez the
//! same script works, since it reads only Marquez's JSON.
//!
//! The script fills a node picker from `/api/v1/namespaces` and each namespace's jobs and
//! datasets, fetches the graph of the chosen node and draws it as SVG: one column per step from
//! the sources (a node's column is its longest path from a node without inputs), boxes for jobs
//! (rounded) and datasets, arrows for edges. Clicking a box draws its graph. Elements carry
//! `data-node-id` / `data-type` / `data-column` and `data-origin` / `data-destination`, and
//! `#summary` carries `data-nodes` / `data-edges` / `data-selected`, so a test reads the
//! drawing from the DOM.

use poem::handler;
use poem::web::Html;

/// The page (static: all the work happens in the browser).
#[handler]
pub fn page() -> Html<&'static str> {
    Html(PAGE)
}

const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Tributary · lineage</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2733; background: #f6f8fa; }
  header { padding: 12px 20px; background: #1d2733; color: #fff; display: flex; gap: 16px; align-items: center; flex-wrap: wrap; }
  header h1 { font-size: 18px; margin: 0; }
  header a { color: #9cc7ff; }
  select, input { font: inherit; padding: 2px 4px; max-width: 60vw; }
  #summary, #error { margin: 8px 20px; }
  #error { color: #b3261e; white-space: pre-wrap; }
  svg { display: block; margin: 0 10px; }
  .node rect { stroke-width: 1.5; }
  .job rect { fill: #fff4d6; stroke: #b7791f; }
  .dataset rect { fill: #e3f0ff; stroke: #2b6cb0; }
  .node.selected rect { stroke-width: 3.5; }
  .node { cursor: pointer; }
  .node .name { font-size: 12px; font-weight: 600; }
  .node .ns { font-size: 10px; fill: #4a5568; }
  .edge { fill: none; stroke: #718096; stroke-width: 1.3; }
  .legend span { display: inline-block; padding: 0 6px; margin-left: 6px; border: 1px solid; border-radius: 3px; }
</style>
</head>
<body data-state="loading">
<header>
  <h1>Lineage</h1>
  <label>node <select id="picker"><option value="">loading…</option></select></label>
  <label>depth <input id="depth" type="number" min="0" max="100" value="20" style="width:4em"></label>
  <span class="legend"><span style="background:#fff4d6;border-color:#b7791f;color:#000">job</span><span style="background:#e3f0ff;border-color:#2b6cb0;color:#000">dataset</span></span>
  <a href="/status">status</a>
</header>
<p id="summary"></p>
<p id="error"></p>
<svg id="graph" xmlns="http://www.w3.org/2000/svg"></svg>
<script>
"use strict";
const SVG = "http://www.w3.org/2000/svg";
const BOX_W = 250, BOX_H = 46, COL_GAP = 90, ROW_GAP = 16, MARGIN = 16;
const params = new URLSearchParams(location.search);
const picker = document.getElementById("picker");
const depthInput = document.getElementById("depth");
if (params.get("depth")) depthInput.value = params.get("depth");

async function getJSON(url) {
  const response = await fetch(url, { headers: { accept: "application/json" } });
  if (!response.ok) throw new Error(url + ": HTTP " + response.status + " " + await response.text());
  return response.json();
}

// Every job and dataset the store knows, as node ids.
async function nodeIds() {
  const { namespaces } = await getJSON("/api/v1/namespaces");
  const ids = [];
  for (const ns of namespaces) {
    const base = "/api/v1/namespaces/" + encodeURIComponent(ns.name);
    const [jobs, datasets] = await Promise.all([
      getJSON(base + "/jobs?limit=1000"), getJSON(base + "/datasets?limit=1000")]);
    for (const j of jobs.jobs) ids.push("job:" + j.namespace + ":" + j.name);
    for (const d of datasets.datasets) ids.push("dataset:" + d.namespace + ":" + d.name);
  }
  return ids;
}

function el(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function short(text, max) { return text.length <= max ? text : "…" + text.slice(text.length - max + 1); }

// Column of each node: its longest path from a node without inputs (bounded, so a cycle ends).
function columns(graph, edges) {
  const col = new Map(graph.map(n => [n.id, 0]));
  for (let round = 0; round < graph.length; round++) {
    let changed = false;
    for (const e of edges) {
      const c = col.get(e.origin) + 1;
      if (c > col.get(e.destination) && c < graph.length) { col.set(e.destination, c); changed = true; }
    }
    if (!changed) break;
  }
  return col;
}

function draw(graph, selected) {
  const svg = document.getElementById("graph");
  svg.replaceChildren();
  const ids = new Set(graph.map(n => n.id));
  const edges = [];
  for (const n of graph) for (const e of n.outEdges) if (ids.has(e.destination)) edges.push(e);
  const col = columns(graph, edges);
  const byColumn = [];
  for (const n of graph) (byColumn[col.get(n.id)] ||= []).push(n);
  const pos = new Map();
  let height = 0;
  byColumn.forEach((nodes, c) => {
    (nodes || []).sort((a, b) => a.type.localeCompare(b.type) || a.id.localeCompare(b.id));
    (nodes || []).forEach((n, r) => {
      const p = { x: MARGIN + c * (BOX_W + COL_GAP), y: MARGIN + r * (BOX_H + ROW_GAP) };
      pos.set(n.id, p);
      height = Math.max(height, p.y + BOX_H + MARGIN);
    });
  });
  const width = MARGIN * 2 + Math.max(1, byColumn.length) * (BOX_W + COL_GAP) - COL_GAP;
  svg.setAttribute("viewBox", "0 0 " + width + " " + Math.max(height, 60));
  svg.setAttribute("width", Math.min(width, window.innerWidth - 20));
  const defs = el("defs", {}, svg);
  const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5",
    markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" }, defs);
  el("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#718096" }, marker);
  for (const e of edges) {
    const a = pos.get(e.origin), b = pos.get(e.destination);
    const x1 = a.x + BOX_W, y1 = a.y + BOX_H / 2, x2 = b.x, y2 = b.y + BOX_H / 2;
    const bend = Math.max(30, (x2 - x1) / 2);
    el("path", { class: "edge", "data-origin": e.origin, "data-destination": e.destination,
      d: `M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}`,
      "marker-end": "url(#arrow)" }, svg);
  }
  for (const n of graph) {
    const p = pos.get(n.id);
    const kind = n.type === "JOB" ? "job" : "dataset";
    const g = el("g", { class: "node " + kind + (n.id === selected ? " selected" : ""),
      "data-node-id": n.id, "data-type": n.type, "data-column": String(col.get(n.id)),
      transform: `translate(${p.x},${p.y})` }, svg);
    el("title", {}, g).textContent = n.id;
    el("rect", { width: BOX_W, height: BOX_H, rx: kind === "job" ? 14 : 2 }, g);
    const data = n.data || {};
    const name = data.name || n.id;
    const ns = (data.namespace || "") + (kind === "job" ? " · job" : "");
    el("text", { class: "name", x: 10, y: 19 }, g).textContent = short(name, 31);
    el("text", { class: "ns", x: 10, y: 36 }, g).textContent = short(ns, 42);
    g.addEventListener("click", () => show(n.id));
  }
  const summary = document.getElementById("summary");
  summary.textContent = graph.length + " nodes, " + edges.length + " edges around " + selected;
  summary.dataset.nodes = String(graph.length);
  summary.dataset.edges = String(edges.length);
  summary.dataset.selected = selected;
}

async function show(nodeId) {
  document.body.dataset.state = "loading";
  document.getElementById("error").textContent = "";
  if (![...picker.options].some(o => o.value === nodeId)) {
    picker.add(new Option(nodeId, nodeId));
  }
  picker.value = nodeId;
  const url = new URL(location.href);
  url.searchParams.set("nodeId", nodeId);
  url.searchParams.set("depth", depthInput.value);
  history.replaceState(null, "", url);
  try {
    const lineage = await getJSON("/api/v1/lineage?nodeId=" + encodeURIComponent(nodeId) +
      "&depth=" + encodeURIComponent(depthInput.value || "20"));
    draw(lineage.graph, nodeId);
    document.body.dataset.state = "drawn";
  } catch (e) {
    document.getElementById("error").textContent = String(e.message || e);
    document.body.dataset.state = "error";
  }
}

async function main() {
  try {
    const ids = await nodeIds();
    picker.replaceChildren(...ids.map(id => new Option(id, id)));
    const start = params.get("nodeId")
      || ids.find(id => id.startsWith("job:") && id.includes("marts"))
      || ids.find(id => id.startsWith("job:")) || ids[0];
    if (!start) {
      document.getElementById("summary").textContent =
        "No lineage yet: no job has sent an OpenLineage event to POST /api/v1/lineage.";
      document.body.dataset.state = "empty";
      return;
    }
    picker.addEventListener("change", () => show(picker.value));
    depthInput.addEventListener("change", () => show(picker.value));
    await show(start);
  } catch (e) {
    document.getElementById("error").textContent = String(e.message || e);
    document.body.dataset.state = "error";
  }
}
main();
</script>
</body>
</html>
"##;
