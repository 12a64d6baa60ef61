// lightmesh dashboard: keeps the stat tables live and draws the workload chart. No
// dependencies; everything comes from this server's /api/stat.
"use strict";

const refreshEvery = 5000;

function fmt(v, kind) {
  if (v === null || v === undefined) return "-";
  switch (kind) {
    case "pct": return (100 * v).toFixed(2) + "%";
    case "rps": return v.toFixed(1) + "rps";
    case "ms": return v.toFixed(0) + "ms";
    default: return v.toFixed(0);
  }
}

function cell(cls, text, href) {
  const td = document.createElement("td");
  td.className = cls;
  if (href) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    td.appendChild(a);
  } else {
    td.textContent = text;
  }
  return td;
}

function rowHref(r) {
  if (r.resource === "namespace") return "/namespaces/" + encodeURIComponent(r.name);
  return "/namespaces/" + encodeURIComponent(r.namespace) + "/" + encodeURIComponent(r.resource) + "/" + encodeURIComponent(r.name);
}

function fillTable(table, rows) {
  const body = table.tBodies[0];
  const fresh = document.createElement("tbody");
  for (const r of rows) {
    const tr = document.createElement("tr");
    tr.dataset.name = r.name;
    tr.append(
      cell("name", r.name, rowHref(r)),
      cell("meshed", r.meshedPods + "/" + r.totalPods),
      cell("success", fmt(r.successRate, "pct")),
      cell("rps", fmt(r.requestsPerSecond, "rps")),
      cell("p50", fmt(r.latencyP50Ms, "ms")),
      cell("p95", fmt(r.latencyP95Ms, "ms")),
      cell("p99", fmt(r.latencyP99Ms, "ms")),
      cell("tcp", fmt(r.tcpConnections)),
    );
    fresh.appendChild(tr);
  }
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    tr.className = "empty";
    const td = cell("", "No resources found.");
    td.colSpan = 8;
    tr.appendChild(td);
    fresh.appendChild(tr);
  }
  table.replaceChild(fresh, body);
}

const samples = [];

function drawChart(svg) {
  const w = 600, h = 200, pad = 4;
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  if (samples.length < 2) return;
  const maxMs = Math.max(1, ...samples.flatMap(s => [s.p50, s.p95, s.p99].filter(v => v !== null)));
  const maxRps = Math.max(1, ...samples.map(s => s.rps || 0));
  const x = i => pad + (w - 2 * pad) * i / (samples.length - 1);
  const series = [["p50", "#2b6cb0", maxMs], ["p95", "#d69e2e", maxMs], ["p99", "#c53030", maxMs], ["rps", "#38a169", maxRps]];
  for (const [key, color, max] of series) {
    const pts = samples.map((s, i) => s[key] === null ? null : x(i).toFixed(1) + "," + (h - pad - (h - 2 * pad) * s[key] / max).toFixed(1)).filter(Boolean);
    if (pts.length < 2) continue;
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", pts.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", color);
    line.setAttribute("stroke-width", "2");
    line.dataset.series = key;
    svg.appendChild(line);
  }
}

async function refresh() {
  for (const table of document.querySelectorAll("table.stat[data-query]")) {
    try {
      const resp = await fetch("/api/stat?" + table.dataset.query, { cache: "no-store" });
      if (!resp.ok) continue;
      const data = await resp.json();
      const rows = data.rows || [];
      fillTable(table, rows);
      const svg = document.querySelector("#chart svg");
      if (svg && rows.length === 1) {
        const r = rows[0];
        samples.push({ p50: r.latencyP50Ms, p95: r.latencyP95Ms, p99: r.latencyP99Ms, rps: r.requestsPerSecond });
        if (samples.length > 180) samples.shift();
        drawChart(svg);
      }
    } catch (e) {
      // The next round tries again; the table keeps its last rows.
    }
  }
}

// The live tap: stream /api/tap (newline-delimited JSON) into the table, a row per event.
function tapRow(ev) {
  const tr = document.createElement("tr");
  tr.className = "event";
  const t = new Date(ev.time);
  const status = ev.status ? String(ev.status) : (ev.error || "-");
  tr.append(
    cell("time", isNaN(t) ? "" : t.toISOString().substring(11, 23)),
    cell("pod", ev.pod || ""),
    cell("direction", ev.direction || ""),
    cell("method", ev.method || ""),
    cell("authority", ev.authority || ""),
    cell("path", ev.path || ""),
    cell("status" + (ev.status >= 500 || !ev.status ? " bad" : ""), status),
    cell("latency", typeof ev.latencyMs === "number" ? ev.latencyMs.toFixed(1) + "ms" : "-"),
    cell("src", ev.sourceIdentity || ev.sourceAddr || "-"),
    cell("dst", ev.destinationIdentity || ev.destinationAddr || "-"),
  );
  return tr;
}

async function streamTap(table) {
  const status = document.getElementById("tap-status");
  const errors = document.getElementById("tap-errors");
  const body = table.tBodies[0];
  let events = 0;
  const line = text => {
    if (!text.trim()) return;
    let ev;
    try { ev = JSON.parse(text); } catch (e) { return; }
    if (ev.streamError) {
      const li = document.createElement("li");
      li.textContent = (ev.pod ? ev.pod + ": " : "") + ev.streamError;
      errors.appendChild(li);
      return;
    }
    body.insertBefore(tapRow(ev), body.firstChild);
    events++;
    status.textContent = "Streaming: " + events + " requests so far.";
  };
  try {
    const resp = await fetch("/api/tap?" + table.dataset.query, { cache: "no-store" });
    if (!resp.ok) {
      let msg = "the tap failed (" + resp.status + ")";
      try { msg = (await resp.json()).error || msg; } catch (e) { /* keep msg */ }
      status.textContent = msg;
      status.className = "error";
      return;
    }
    status.textContent = "Streaming: waiting for requests.";
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        line(buf.substring(0, nl));
        buf = buf.substring(nl + 1);
      }
    }
    line(buf);
    status.textContent = "Done: " + events + " requests. Submit the form to tap again.";
    status.dataset.done = "true";
  } catch (e) {
    status.textContent = "the tap stream broke: " + e;
    status.className = "error";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  refresh();
  setInterval(refresh, refreshEvery);
  const tap = document.querySelector("table#tap[data-query]");
  if (tap && tap.dataset.query) streamTap(tap);
});
