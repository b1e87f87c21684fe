// The surgeflow demo page: polls /api/state and redraws the heatmap, the pipeline's rates,
// the match statistics and the recent proposals. Plain browser JavaScript, no libraries.
"use strict";

const POLL_MS = 1500;
const SVG_NS = "http://www.w3.org/2000/svg";
const METRES_PER_DEGREE = 111320;
const MAP_WIDTH = 1000;
// Cells at 1.0 (no surge), from no available driver to the most drivers of any cell.
const CALM_LOW = [21, 33, 50];
const CALM_HIGH = [46, 86, 132];
const CALM = "rgb(34,58,89)";
// Surge colours from just above 1.0 (t = 0) to the cap (t = 1).
const RAMP = [
  [0.0, [254, 240, 138]],
  [0.3, [251, 191, 36]],
  [0.6, [234, 88, 12]],
  [0.85, [220, 38, 38]],
  [1.0, [136, 19, 55]],
];

function surgeColour(multiplier, max) {
  if (!(multiplier > 1.0001)) return CALM;
  const t = Math.max(0, Math.min(1, (multiplier - 1) / Math.max(0.01, max - 1)));
  for (let i = 1; i < RAMP.length; i++) {
    const [t1, c1] = RAMP[i];
    const [t0, c0] = RAMP[i - 1];
    if (t <= t1) {
      const f = (t - t0) / (t1 - t0);
      const c = c0.map((v, k) => Math.round(v + (c1[k] - v) * f));
      return `rgb(${c[0]},${c[1]},${c[2]})`;
    }
  }
  const last = RAMP[RAMP.length - 1][1];
  return `rgb(${last[0]},${last[1]},${last[2]})`;
}

function calmColour(supply, maxSupply) {
  const f = maxSupply > 0 ? Math.sqrt(Math.min(1, supply / maxSupply)) : 0.5;
  const c = CALM_LOW.map((v, k) => Math.round(v + (CALM_HIGH[k] - v) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  }[c]));
}

function fmtInt(n) {
  return Math.round(n).toLocaleString("en-US");
}

function fmtRate(n) {
  return n >= 100 ? fmtInt(n) : n.toFixed(1);
}

function fmtClock(seconds) {
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m${sec}s` : `${m}m${sec}s`;
}

function stateLabel(state) {
  if (typeof state === "string") return state.replace("_", " ");
  if (state && "exited" in state) {
    return state.exited === null ? "killed" : `exited ${state.exited}`;
  }
  return "?";
}

function svg(name, attrs, text) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

// An equirectangular projection of `bounds` ([min_lat, min_lon, max_lat, max_lon]) scaled by
// the cosine of the middle latitude, so cells keep their true proportions.
function projection(bounds) {
  const pad = 0.04;
  let [minLat, minLon, maxLat, maxLon] = bounds;
  const dLat = Math.max(maxLat - minLat, 1e-4);
  const dLon = Math.max(maxLon - minLon, 1e-4);
  minLat -= dLat * pad; maxLat += dLat * pad;
  minLon -= dLon * pad; maxLon += dLon * pad;
  const k = Math.cos(((minLat + maxLat) / 2) * Math.PI / 180);
  const scale = MAP_WIDTH / ((maxLon - minLon) * k);
  const height = Math.min(Math.max((maxLat - minLat) * scale, 300), 1400);
  return {
    scale, height, minLat, maxLat, minLon, maxLon,
    x: (lon) => (lon - minLon) * k * scale,
    y: (lat) => (maxLat - lat) * scale,
  };
}

function niceStep(span) {
  const raw = span / 6;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (raw <= m * p) return m * p;
  return 10 * p;
}

// The multiplier a cell is coloured by: the product chosen, or the highest of all.
function multiplierOf(cell, product) {
  if (!product) return cell.multiplier;
  return cell.products[product] ?? 1.0;
}

function drawMap(state) {
  const map = document.getElementById("map");
  const caption = document.getElementById("map-caption");
  const product = document.getElementById("product").value;
  if (!state.bounds) {
    caption.textContent = "";
    return;
  }
  const pr = projection(state.bounds);
  const max = state.scale_max;
  map.setAttribute("viewBox", `0 0 ${MAP_WIDTH} ${pr.height.toFixed(1)}`);
  const frag = document.createDocumentFragment();

  // Graticule: a light grid of latitudes and longitudes, labelled at the edges.
  const step = niceStep(pr.maxLon - pr.minLon);
  const digits = Math.max(0, -Math.floor(Math.log10(step)));
  for (let lon = Math.ceil(pr.minLon / step) * step; lon <= pr.maxLon; lon += step) {
    const x = pr.x(lon);
    frag.appendChild(svg("line", { class: "graticule", x1: x, y1: 0, x2: x, y2: pr.height }));
    frag.appendChild(svg("text", { class: "graticule-label", x: x + 3, y: pr.height - 4 }, lon.toFixed(digits)));
  }
  for (let lat = Math.ceil(pr.minLat / step) * step; lat <= pr.maxLat; lat += step) {
    const y = pr.y(lat);
    frag.appendChild(svg("line", { class: "graticule", x1: 0, y1: y, x2: MAP_WIDTH, y2: y }));
    frag.appendChild(svg("text", { class: "graticule-label", x: 4, y: y - 3 }, lat.toFixed(digits)));
  }

  // The outline of the area: the simulated city's disc, else the box of the cells seen.
  if (state.area) {
    const a = state.area;
    const cx = pr.x(a.center_lon);
    const cy = pr.y(a.center_lat);
    const r = (a.radius_m / METRES_PER_DEGREE) * pr.scale;
    frag.appendChild(svg("circle", { class: "outline", cx, cy, r, "data-outline": "city" }));
    frag.appendChild(svg("text", { class: "outline-label", x: cx, y: cy - r - 6, "text-anchor": "middle" },
      `simulated city, ${(a.radius_m / 1000).toFixed(1)} km radius`));
  } else if (state.cells.length > 0) {
    const b = state.bounds;
    const x0 = pr.x(b[1]);
    const y0 = pr.y(b[2]);
    frag.appendChild(svg("rect", {
      class: "outline", x: x0, y: y0, width: pr.x(b[3]) - x0, height: pr.y(b[0]) - y0, "data-outline": "cells",
    }));
    frag.appendChild(svg("text", { class: "outline-label", x: x0, y: y0 - 6 }, "area of the data"));
  }

  // The cells, calm ones first so surging ones are drawn on top.
  const cells = state.cells
    .map((c) => ({ cell: c, m: multiplierOf(c, product) }))
    .sort((a, b) => a.m - b.m);
  const maxSupply = Math.max(1, ...state.cells.map((c) => c.supply));
  for (const { cell: c, m } of cells) {
    const [minLat, minLon, maxLat, maxLon] = c.bbox;
    const x = pr.x(minLon);
    const y = pr.y(maxLat);
    const surging = m > 1.0001;
    const rect = svg("rect", {
      class: surging ? "cell surging" : "cell calm",
      x: x.toFixed(2), y: y.toFixed(2),
      width: (pr.x(maxLon) - x).toFixed(2), height: (pr.y(minLat) - y).toFixed(2),
      fill: surging ? surgeColour(m, max) : calmColour(c.supply, maxSupply),
      "fill-opacity": surging ? 0.92 : 0.75,
      "data-geohash": c.geohash,
      "data-multiplier": m.toFixed(2),
    });
    const products = Object.entries(c.products).map(([p, m]) => `${p} ×${m.toFixed(1)}`).join(", ");
    rect.appendChild(svg("title", {},
      `${c.geohash}: ×${c.multiplier.toFixed(2)}${c.product ? " (" + c.product + ")" : ""}\n` +
      `all products: demand ${c.demand}, supply ${c.supply}${products ? "\n" + products : ""}`));
    frag.appendChild(rect);
  }
  // Multipliers written on the hottest cells.
  const hottest = cells.filter((e) => e.m > 1.0001).slice(-6);
  for (const { cell: c, m } of hottest) {
    const [minLat, minLon, maxLat, maxLon] = c.bbox;
    const w = pr.x(maxLon) - pr.x(minLon);
    const size = Math.max(9, Math.min(16, w / 3.2));
    frag.appendChild(svg("text", {
      class: "cell-label",
      x: pr.x((minLon + maxLon) / 2), y: pr.y((minLat + maxLat) / 2) + size / 3,
      "text-anchor": "middle", "font-size": size.toFixed(1),
    }, `×${m.toFixed(1)}`));
  }

  // A scale bar: the largest round number of kilometres under a fifth of the width.
  const metresPerUnit = METRES_PER_DEGREE / pr.scale;
  let km = 1;
  for (const candidate of [0.5, 1, 2, 5, 10, 20, 50]) {
    if ((candidate * 1000) / metresPerUnit < MAP_WIDTH / 5) km = candidate;
  }
  const len = (km * 1000) / metresPerUnit;
  const sy = pr.height - 22;
  frag.appendChild(svg("line", { class: "scale-bar", x1: MAP_WIDTH - 20 - len, y1: sy, x2: MAP_WIDTH - 20, y2: sy }));
  frag.appendChild(svg("text", { class: "scale-label", x: MAP_WIDTH - 20 - len / 2, y: sy - 6, "text-anchor": "middle" }, `${km} km`));

  map.replaceChildren(frag);
  const surging = cells.filter((e) => e.m > 1.0001).length;
  caption.textContent = `${state.cells.length} cells, ${surging} surging`;
}

function drawLegend(max) {
  const legend = document.getElementById("legend");
  if (legend.dataset.max === String(max)) return;
  legend.dataset.max = String(max);
  const stops = [];
  for (let i = 0; i <= 10; i++) {
    const m = 1 + ((max - 1) * Math.max(i, 0.2)) / 10;
    stops.push(`${surgeColour(m, max)} ${i * 10}%`);
  }
  const ticks = [1, 1 + (max - 1) / 4, 1 + (max - 1) / 2, 1 + (3 * (max - 1)) / 4, max]
    .map((m, i) => {
      const shift = i === 0 ? "0" : i === 4 ? "-100%" : "-50%";
      return `<span style="left:${i * 25}%;transform:translateX(${shift})">×${m.toFixed(1)}</span>`;
    }).join("");
  legend.innerHTML =
    `<span><span class="swatch wide" style="background:linear-gradient(to right, rgb(${CALM_LOW}), rgb(${CALM_HIGH}))"></span>` +
    `no surge (×1.0; lighter: more available drivers)</span>` +
    `<span class="ramp-box"><span class="ramp" style="background:linear-gradient(to right, ${stops.join(", ")})"></span>` +
    `<span class="ticks">${ticks}</span></span>` +
    `<span>surge, up to the pricer's highest, ×${max.toFixed(1)}</span>`;
}

function drawCards(state) {
  const m = state.matches;
  document.getElementById("stat-surging").textContent = fmtInt(state.surging_cells);
  document.getElementById("stat-max").textContent = `×${state.max_multiplier.toFixed(1)}`;
  document.getElementById("stat-proposals").textContent = fmtInt(m.proposals);
  document.getElementById("stat-accepted").textContent = fmtInt(m.accepted);
  document.getElementById("stat-unfilled").textContent = fmtInt(m.unfilled);
  document.getElementById("stat-eta").textContent = m.proposals > 0 ? `${Math.round(m.mean_eta_s)} s` : "–";
}

function drawPipeline(state) {
  const rows = state.operators.map((o) => {
    const label = stateLabel(o.state);
    const cls = o.state === "running" ? "running" : (typeof o.state === "object" || o.state === "not_answering" ? "bad" : "");
    return `<tr data-operator="${escapeHtml(o.name)}">` +
      `<td title="pid ${o.pid ?? "?"}, log ${escapeHtml(o.log)}">${escapeHtml(o.name)}</td>` +
      `<td class="state ${cls}">${escapeHtml(label)}</td>` +
      `<td class="num in">${fmtRate(o.in_per_s)}</td>` +
      `<td class="num out">${fmtRate(o.out_per_s)}</td>` +
      `<td class="num lag">${fmtInt(o.lag)}</td>` +
      `<td class="num dlq">${fmtInt(o.dlq)}</td></tr>`;
  });
  document.querySelector("#pipeline tbody").innerHTML =
    rows.join("") || `<tr><td colspan="6" class="empty">starting&hellip;</td></tr>`;
  const m = state.matches;
  document.getElementById("match-detail").textContent =
    `Matches: ${fmtInt(m.proposals)} proposals (${fmtInt(m.first_attempts)} first attempts), ` +
    `${fmtInt(m.accepted)} accepted, ${fmtInt(m.declined)} declined, ${fmtInt(m.timeouts)} timed out; ` +
    `${fmtInt(m.unfilled)} unfilled (no driver in radius ${fmtInt(m.unfilled_no_driver)}, ` +
    `max attempts ${fmtInt(m.unfilled_max_attempts)}, deadline ${fmtInt(m.unfilled_deadline)}).`;
}

function drawTopCells(state) {
  const rows = state.top_cells.map((c) =>
    `<tr data-geohash="${escapeHtml(c.geohash)}">` +
    `<td><span class="chip" style="background:${surgeColour(c.multiplier, state.scale_max)}"></span><code>${escapeHtml(c.geohash)}</code></td>` +
    `<td>${escapeHtml(c.product ?? "–")}</td>` +
    `<td class="num">×${c.multiplier.toFixed(1)}</td>` +
    `<td class="num">${fmtInt(c.product_demand ?? c.demand)}</td>` +
    `<td class="num">${fmtInt(c.product_supply ?? c.supply)}</td></tr>`);
  document.querySelector("#top-cells tbody").innerHTML =
    rows.join("") || `<tr><td colspan="5" class="empty">no cell surges yet</td></tr>`;
}

function drawProposals(state) {
  const rows = state.recent_proposals.map((p) =>
    `<tr><td><code>${escapeHtml(p.trip_id)}</code>${p.attempt > 1 ? ` <small>#${p.attempt}</small>` : ""}</td>` +
    `<td><code>${escapeHtml(p.driver_id)}</code></td>` +
    `<td>${escapeHtml(p.product)}</td>` +
    `<td class="num">${Math.round(p.eta_s)} s</td>` +
    `<td class="num">${fmtInt(p.distance_m)} m</td>` +
    `<td class="num">×${p.surge_multiplier.toFixed(1)}</td></tr>`);
  document.querySelector("#proposals tbody").innerHTML =
    rows.join("") || `<tr><td colspan="6" class="empty">no proposal yet</td></tr>`;
}

function drawStatus(state) {
  const status = document.getElementById("status");
  status.classList.remove("error");
  const f = state.feeder;
  const feeder = f ? ` · ${f.kind}: ${f.detail} (${f.state})` : "";
  const time = new Date(state.now_ms).toLocaleTimeString("en-GB");
  status.textContent = `${state.phase} for ${fmtClock(state.uptime_s)}${feeder} · updated ${time}`;
}

let lastState = null;

async function poll() {
  try {
    const response = await fetch("/api/state", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const state = await response.json();
    lastState = state;
    drawStatus(state);
    drawLegend(state.scale_max);
    drawCards(state);
    drawMap(state);
    drawPipeline(state);
    drawTopCells(state);
    drawProposals(state);
  } catch (e) {
    const status = document.getElementById("status");
    status.classList.add("error");
    status.textContent = `the demo does not answer (${e.message}): stopped?`;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

document.getElementById("product").addEventListener("change", () => {
  if (lastState) drawMap(lastState);
});

poll();
