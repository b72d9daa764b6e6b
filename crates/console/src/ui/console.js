// Kraftwerk's web console: a page that reads and changes the cluster
// through the node's HTTP API (/api/v1) and draws live charts from the
// nodes' counters (/api/v1/stats). Plain JavaScript, no dependencies: it is
// compiled into the kraftwerk binary and works offline.
"use strict";

const REFRESH_MS = 3000;
const STATS_MS = 2000;
const HISTORY = 90;
const COLORS = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7ea4", "#57606a"];

const state = { session: null, timer: null, route: null, stats: { prev: null, brokers: {}, topics: {} } };

// ---- DOM helpers (text only goes in through textContent) ----

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function table(testid, headers, rows) {
  return h("table", { "data-testid": testid },
    h("thead", {}, h("tr", {}, headers.map((c) => h("th", { class: c.num ? "num" : null }, c.label || c)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, "none"))));
}

function num(v) {
  return h("td", { class: "num" }, v === null || v === undefined ? "–" : v);
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
}

function rate(n, unit) {
  if (n === null || n === undefined) return "–";
  return unit === "B" ? bytes(n) + "/s" : (n < 10 ? n.toFixed(1) : n.toFixed(0)) + "/s";
}

function showError(e) {
  const box = document.getElementById("error");
  if (!e) { box.hidden = true; box.textContent = ""; return; }
  box.hidden = false;
  box.textContent = e.message || String(e);
}

// ---- API ----

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? `${body.error}: ${body.message}` : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const init = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch("/api/v1" + path, init);
  if (response.status === 204) return null;
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

const enc = encodeURIComponent;

// ---- live counters: /api/v1/stats sampled into rates ----

function pushPoint(store, key, t, values) {
  const series = store[key] || (store[key] = []);
  series.push({ t, ...values });
  while (series.length > HISTORY) series.shift();
}

async function sampleStats() {
  let s;
  try { s = await api("GET", "/stats"); } catch (_) { return; }
  const prev = state.stats.prev;
  state.stats.prev = s;
  if (!prev) return;
  const dt = (s.time_ms - prev.time_ms) / 1000;
  if (dt <= 0) return;
  const before = new Map(prev.brokers.filter((b) => b.reachable).map((b) => [b.broker_id, b]));
  const topicsNow = {};
  const topicsBefore = {};
  for (const b of s.brokers) {
    const p = before.get(b.broker_id);
    if (!b.reachable || !p) continue;
    const r = (k) => Math.max(0, (b[k] - p[k]) / dt);
    pushPoint(state.stats.brokers, b.broker_id, s.time_ms,
      { bytes_in: r("bytes_in"), bytes_out: r("bytes_out"), messages_in: r("messages_in"), requests: r("requests") });
    for (const t of b.topics || []) sumInto(topicsNow, t);
    for (const t of p.topics || []) sumInto(topicsBefore, t);
  }
  for (const [name, now] of Object.entries(topicsNow)) {
    const was = topicsBefore[name] || { bytes_in: now.bytes_in, bytes_out: now.bytes_out, messages_in: now.messages_in };
    const r = (k) => Math.max(0, (now[k] - was[k]) / dt);
    pushPoint(state.stats.topics, name, s.time_ms,
      { bytes_in: r("bytes_in"), bytes_out: r("bytes_out"), messages_in: r("messages_in") });
  }
  document.querySelectorAll("[data-chart]").forEach((el) => el.redraw && el.redraw());
}

function sumInto(acc, t) {
  const a = acc[t.topic] || (acc[t.topic] = { bytes_in: 0, bytes_out: 0, messages_in: 0 });
  a.bytes_in += t.bytes_in; a.bytes_out += t.bytes_out; a.messages_in += t.messages_in;
}

function latest(store, key, field) {
  const s = store[key];
  return s && s.length ? s[s.length - 1][field] : null;
}

// ---- charts: SVG lines, one per series ----

function chart(title, testid, seriesFn, unit) {
  const svgNs = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNs, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", "0 0 400 150");
  svg.setAttribute("preserveAspectRatio", "none");
  const legend = h("div", { class: "legend" });
  const card = h("div", { class: "card", "data-chart": testid, "data-testid": testid }, h("h3", {}, title), svg, legend);
  card.redraw = () => {
    const series = seriesFn();
    while (svg.firstChild) svg.firstChild.remove();
    legend.replaceChildren();
    let max = 0;
    let t0 = Infinity; let t1 = -Infinity;
    for (const s of series) {
      for (const p of s.points) { max = Math.max(max, p.v); t0 = Math.min(t0, p.t); t1 = Math.max(t1, p.t); }
    }
    const line = (x1, y1, x2, y2) => {
      const l = document.createElementNS(svgNs, "line");
      l.setAttribute("x1", x1); l.setAttribute("y1", y1); l.setAttribute("x2", x2); l.setAttribute("y2", y2);
      l.setAttribute("class", "axis");
      svg.append(l);
    };
    line(40, 135, 400, 135); line(40, 5, 40, 135);
    const label = (x, y, text) => {
      const el = document.createElementNS(svgNs, "text");
      el.setAttribute("x", x); el.setAttribute("y", y); el.textContent = text;
      svg.append(el);
    };
    const top = max > 0 ? max * 1.1 : 1;
    label(2, 12, rate(top, unit));
    label(2, 135, "0");
    if (!isFinite(t0) || t1 <= t0) {
      label(150, 75, "collecting samples…");
    }
    series.forEach((s, i) => {
      const color = COLORS[i % COLORS.length];
      legend.append(h("span", {}, h("i", { style: `background:${color}` }), `${s.name} ${rate(s.points.length ? s.points[s.points.length - 1].v : null, unit)}`));
      if (s.points.length < 2 || t1 <= t0) return;
      const pts = s.points.map((p) => `${40 + ((p.t - t0) / (t1 - t0)) * 358},${135 - (p.v / top) * 128}`).join(" ");
      const pl = document.createElementNS(svgNs, "polyline");
      pl.setAttribute("points", pts);
      pl.setAttribute("fill", "none");
      pl.setAttribute("stroke", color);
      pl.setAttribute("stroke-width", "1.6");
      pl.setAttribute("vector-effect", "non-scaling-stroke");
      svg.append(pl);
    });
  };
  card.redraw();
  return card;
}

function brokerSeries(field) {
  return () => Object.entries(state.stats.brokers).map(([id, pts]) => ({ name: `broker ${id}`, points: pts.map((p) => ({ t: p.t, v: p[field] })) }));
}

function topicSeries(name, fields) {
  return () => fields.map(([field, label]) => ({ name: label, points: (state.stats.topics[name] || []).map((p) => ({ t: p.t, v: p[field] })) }));
}

// ---- pages ----

async function clusterPage(page) {
  const c = await api("GET", "/cluster");
  const voters = c.quorum ? c.quorum.voters : [];
  page.replaceChildren(
    h("h1", {}, "Cluster"),
    h("div", { class: "facts" },
      h("div", {}, h("span", {}, "cluster id"), c.cluster_id || "–"),
      h("div", {}, h("span", {}, "active controller"), h("b", { "data-testid": "controller-id" }, c.controller_id)),
      h("div", {}, h("span", {}, "brokers"), c.brokers.length),
      c.quorum ? h("div", {}, h("span", {}, "metadata high watermark"), c.quorum.high_watermark) : null,
      c.quorum ? h("div", {}, h("span", {}, "quorum epoch"), c.quorum.leader_epoch) : null),
    h("h2", {}, "Brokers"),
    table("brokers", ["Id", "Address", "Rack", "State", { label: "Bytes in", num: true }, { label: "Bytes out", num: true }, { label: "Requests", num: true }],
      c.brokers.map((b) => h("tr", { "data-broker": b.broker_id },
        h("td", {}, b.broker_id, b.broker_id === c.controller_id ? h("span", { class: "badge" }, "controller") : null),
        h("td", {}, `${b.host}:${b.port}`),
        h("td", {}, b.rack || "–"),
        h("td", {}, b.fenced ? h("span", { class: "badge bad" }, "fenced") : h("span", { class: "badge ok" }, "active")),
        num(rate(latest(state.stats.brokers, b.broker_id, "bytes_in"), "B")),
        num(rate(latest(state.stats.brokers, b.broker_id, "bytes_out"), "B")),
        num(rate(latest(state.stats.brokers, b.broker_id, "requests")))))),
    h("h2", {}, "Controller quorum"),
    c.quorum
      ? table("quorum", ["Voter", "Role", { label: "Log end offset", num: true }, { label: "Lag", num: true }],
        voters.map((v) => h("tr", {},
          h("td", {}, v.node_id),
          h("td", {}, v.node_id === c.quorum.leader_id ? h("span", { class: "badge ok" }, "leader") : "follower"),
          num(v.log_end_offset), num(v.lag))))
      : h("p", { class: "muted" }, "The quorum cannot be described by this user."),
    h("h2", {}, "Throughput per broker"),
    h("div", { class: "grid" },
      chart("Bytes in", "chart-broker-bytes-in", brokerSeries("bytes_in"), "B"),
      chart("Bytes out", "chart-broker-bytes-out", brokerSeries("bytes_out"), "B"),
      chart("Requests", "chart-broker-requests", brokerSeries("requests"))));
}

function topicRow(t) {
  return h("tr", { "data-topic": t.name, class: t.under_replicated_partitions ? "under-replicated" : null },
    h("td", {}, h("a", { href: `#/topics/${enc(t.name)}` }, t.name), t.internal ? h("span", { class: "badge" }, "internal") : null),
    num(t.partitions_count), num(t.replication_factor), num(bytes(t.size_bytes)),
    num(t.under_replicated_partitions || 0),
    num(rate(latest(state.stats.topics, t.name, "bytes_in"), "B")),
    num(rate(latest(state.stats.topics, t.name, "bytes_out"), "B")),
    h("td", {}, h("button", {
      class: "danger mutating", "data-testid": `delete-topic-${t.name}`,
      onclick: async () => {
        if (!confirm(`Delete topic ${t.name} and all its records?`)) return;
        await act(() => api("DELETE", `/topics/${enc(t.name)}`));
      },
    }, "Delete")));
}

function topicsForm() {
  const name = h("input", { name: "name", required: true, placeholder: "orders", "data-testid": "new-topic-name" });
  const partitions = h("input", { name: "partitions", type: "number", min: 1, value: 3, "data-testid": "new-topic-partitions" });
  const rf = h("input", { name: "replication", type: "number", min: -1, value: -1, title: "-1: the broker's default.replication.factor", "data-testid": "new-topic-replication" });
  return h("form", {
    class: "inline mutating", "data-testid": "create-topic",
    onsubmit: async (e) => {
      e.preventDefault();
      await act(() => api("POST", "/topics", { name: name.value.trim(), partitions_count: Number(partitions.value), replication_factor: Number(rf.value) }));
      name.value = "";
    },
  }, h("label", {}, "Topic name", name), h("label", {}, "Partitions", partitions), h("label", {}, "Replication factor", rf), h("button", { type: "submit" }, "Create topic"));
}

async function topicsPage(page, _route, first) {
  const internal = new URLSearchParams(location.hash.split("?")[1] || "").get("internal") === "1";
  const topics = await api("GET", `/topics${internal ? "?include_internal=true" : ""}`);
  const list = table("topics", ["Topic", { label: "Partitions", num: true }, { label: "RF", num: true }, { label: "Size", num: true }, { label: "Under-replicated", num: true }, { label: "In", num: true }, { label: "Out", num: true }, ""], topics.map(topicRow));
  if (first || !page.querySelector("[data-testid=topics]")) {
    page.replaceChildren(
      h("h1", {}, "Topics"),
      topicsForm(),
      h("p", {}, h("a", { href: internal ? "#/topics" : "#/topics?internal=1" }, internal ? "hide internal topics" : "show internal topics")),
      list);
  } else {
    page.querySelector("[data-testid=topics]").replaceWith(list);
  }
}

async function topicPage(page, route, first) {
  const name = route.args[0];
  const [t, configs] = await Promise.all([api("GET", `/topics/${enc(name)}`), api("GET", `/topics/${enc(name)}/configs`)]);
  const partitions = table("partitions", [{ label: "Partition", num: true }, { label: "Leader", num: true }, "Replicas", "ISR", { label: "Log start", num: true }, { label: "Log end", num: true }, { label: "Size", num: true }, "State"],
    t.partitions.map((p) => {
      const offline = p.leader < 0;
      return h("tr", { "data-partition": p.partition, class: offline ? "offline" : p.under_replicated ? "under-replicated" : null },
        num(p.partition), num(offline ? "none" : p.leader), h("td", {}, p.replicas.join(", ")), h("td", {}, p.isr.join(", ")),
        num(p.earliest_offset), num(p.latest_offset), num(bytes(p.size_bytes)),
        h("td", {}, offline ? h("span", { class: "badge bad" }, "offline") : p.under_replicated ? h("span", { class: "badge warn" }, "under-replicated") : h("span", { class: "badge ok" }, "in sync"),
          p.offline.length ? h("span", { class: "muted" }, ` (replicas offline: ${p.offline.join(", ")})`) : null));
    }));
  if (!first && page.querySelector("[data-testid=partitions]")) {
    page.querySelector("[data-testid=partitions]").replaceWith(partitions);
    return;
  }
  const configRows = configs.filter((c) => !c.is_default || c.name === "cleanup.policy" || c.name === "retention.ms").map((c) =>
    h("tr", { "data-config": c.name }, h("td", {}, c.name), h("td", {}, c.sensitive ? "(sensitive)" : c.value === null ? "null" : c.value), h("td", { class: "muted" }, c.source || "")));
  const key = h("input", { name: "key", placeholder: "retention.ms", list: "config-names", "data-testid": "config-key" });
  const value = h("input", { name: "value", placeholder: "604800000", "data-testid": "config-value" });
  page.replaceChildren(
    h("h1", {}, "Topic ", h("span", { "data-testid": "topic-name" }, t.name)),
    h("div", { class: "facts" },
      h("div", {}, h("span", {}, "partitions"), t.partitions_count),
      h("div", {}, h("span", {}, "replication factor"), t.replication_factor),
      h("div", {}, h("span", {}, "topic id"), t.topic_id || "–"),
      h("div", {}, h("span", {}, "messages"), h("a", { href: `#/topics/${enc(name)}/messages`, "data-testid": "browse-messages" }, "browse"))),
    h("h2", {}, "Partitions"),
    partitions,
    h("h2", {}, "Throughput (this topic, all brokers)"),
    h("div", { class: "grid" },
      chart("Bytes", "chart-topic-bytes", topicSeries(name, [["bytes_in", "in"], ["bytes_out", "out"]]), "B"),
      chart("Messages in", "chart-topic-messages", topicSeries(name, [["messages_in", "messages"]]))),
    h("h2", {}, "Configuration (overrides and main settings)"),
    table("configs", ["Key", "Value", "Source"], configRows),
    h("datalist", { id: "config-names" }, configs.map((c) => h("option", { value: c.name }))),
    h("form", {
      class: "inline mutating", "data-testid": "alter-config",
      onsubmit: async (e) => {
        e.preventDefault();
        const v = value.value;
        const k = key.value.trim();
        await act(() => api("PATCH", `/topics/${enc(name)}/configs`, v === "" ? { delete: [k] } : { set: { [k]: v } }), true);
      },
    }, h("label", {}, "Key", key), h("label", {}, "Value (empty removes the override)", value), h("button", { type: "submit" }, "Set")));
}

// Renders a key or value ({type, data} from the API) as the viewer asks.
function render(d, format) {
  if (!d) return h("span", { class: "muted" }, "null");
  const raw = d.type === "BINARY" ? Uint8Array.from(atob(d.data), (c) => c.charCodeAt(0)) : null;
  const text = d.type === "BINARY" ? null : typeof d.data === "string" ? d.data : JSON.stringify(d.data);
  if (format === "hex" || (raw && format !== "text")) {
    const b = raw || new TextEncoder().encode(text);
    return h("pre", {}, Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(" "));
  }
  if (format !== "text" && text !== null) {
    try { return h("pre", {}, JSON.stringify(JSON.parse(text), null, 2)); } catch (_) { /* not JSON */ }
  }
  return h("pre", {}, text !== null ? text : new TextDecoder().decode(raw));
}

function asText(d) {
  if (!d) return "";
  if (d.type === "BINARY") { try { return atob(d.data); } catch (_) { return ""; } }
  return typeof d.data === "string" ? d.data : JSON.stringify(d.data);
}

async function messagesPage(page, route, first) {
  if (!first) return;
  const name = route.args[0];
  const t = await api("GET", `/topics/${enc(name)}`);
  const partition = h("select", { name: "partition", "data-testid": "browse-partition" }, h("option", { value: "all" }, "all"), t.partitions.map((p) => h("option", { value: p.partition }, p.partition)));
  const mode = h("select", { name: "mode", "data-testid": "browse-mode" }, h("option", { value: "latest" }, "latest N"), h("option", { value: "offset" }, "from offset"), h("option", { value: "timestamp" }, "from timestamp"));
  const count = h("input", { name: "count", type: "number", min: 1, max: 1000, value: 50, "data-testid": "browse-count" });
  const offset = h("input", { name: "offset", type: "number", min: 0, value: 0, "data-testid": "browse-offset" });
  const when = h("input", { name: "timestamp", type: "datetime-local", "data-testid": "browse-timestamp" });
  const filter = h("input", { name: "filter", placeholder: "key or value contains", "data-testid": "browse-filter" });
  const format = h("select", { name: "format", "data-testid": "browse-format" }, h("option", { value: "auto" }, "auto (JSON pretty-printed)"), h("option", { value: "text" }, "text"), h("option", { value: "hex" }, "hex"));
  const results = h("div", { "data-testid": "messages" });
  const load = async () => {
    const n = Math.min(1000, Math.max(1, Number(count.value) || 50));
    const detail = await api("GET", `/topics/${enc(name)}`);
    const chosen = partition.value === "all" ? detail.partitions : detail.partitions.filter((p) => String(p.partition) === partition.value);
    const reads = chosen.filter((p) => p.leader >= 0).map((p) => {
      let q = `max_records=${n}&timeout_ms=2000`;
      if (mode.value === "latest") q += `&offset=${Math.max(p.earliest_offset || 0, (p.latest_offset || 0) - n)}`;
      else if (mode.value === "offset") q += `&offset=${Math.max(0, Number(offset.value) || 0)}`;
      else q += `&timestamp=${when.value ? new Date(when.value).getTime() : 0}`;
      return api("GET", `/topics/${enc(name)}/partitions/${p.partition}/records?${q}`);
    });
    let records = (await Promise.all(reads)).flat();
    const needle = filter.value.toLowerCase();
    if (needle) records = records.filter((r) => asText(r.key).toLowerCase().includes(needle) || asText(r.value).toLowerCase().includes(needle));
    records.sort((a, b) => mode.value === "latest" ? b.timestamp - a.timestamp || b.offset - a.offset : a.timestamp - b.timestamp || a.offset - b.offset);
    records = records.slice(0, n);
    results.replaceChildren(
      h("p", { class: "muted" }, `${records.length} record(s)`),
      table("records", [{ label: "Partition", num: true }, { label: "Offset", num: true }, "Timestamp", "Key", "Value", "Headers"],
        records.map((r) => h("tr", { "data-offset": r.offset },
          num(r.partition_id), num(r.offset), h("td", {}, new Date(r.timestamp).toISOString()),
          h("td", {}, render(r.key, format.value)), h("td", { "data-testid": "record-value" }, render(r.value, format.value)),
          h("td", {}, r.headers.map((x) => h("div", {}, `${x.name}: `, x.value === null ? "null" : new TextDecoder().decode(Uint8Array.from(atob(x.value), (c) => c.charCodeAt(0))))))))));
  };
  page.replaceChildren(
    h("h1", {}, "Messages in ", h("a", { href: `#/topics/${enc(name)}` }, name)),
    h("form", { class: "inline", "data-testid": "browse", onsubmit: async (e) => { e.preventDefault(); await act(load, false); } },
      h("label", {}, "Partition", partition), h("label", {}, "Start", mode), h("label", {}, "N", count),
      h("label", {}, "Offset", offset), h("label", {}, "Timestamp", when), h("label", {}, "Filter", filter),
      h("label", {}, "Show as", format), h("button", { type: "submit" }, "Load")),
    results);
  await load();
}

async function groupsPage(page) {
  const groups = await api("GET", "/groups");
  page.replaceChildren(
    h("h1", {}, "Consumer groups"),
    table("groups", ["Group", "State", "Protocol type"], groups.map((g) => h("tr", { "data-group": g.group_id },
      h("td", {}, h("a", { href: `#/groups/${enc(g.group_id)}` }, g.group_id)), h("td", {}, g.state), h("td", {}, g.protocol_type || "–")))));
}

async function groupPage(page, route, first) {
  const id = route.args[0];
  const g = await api("GET", `/groups/${enc(id)}`);
  const totalLag = g.offsets.reduce((s, o) => s + (o.lag || 0), 0);
  const offsets = table("offsets", ["Topic", { label: "Partition", num: true }, { label: "Committed", num: true }, { label: "Log end", num: true }, { label: "Lag", num: true }],
    g.offsets.map((o) => h("tr", { "data-topic": o.topic, "data-partition": o.partition }, h("td", {}, o.topic), num(o.partition), num(o.committed_offset), num(o.latest_offset), num(o.lag))));
  const members = table("members", ["Member", "Client id", "Host", "Instance id", "Assigned partitions"],
    g.members.map((m) => h("tr", {}, h("td", {}, m.member_id), h("td", {}, m.client_id), h("td", {}, m.host), h("td", {}, m.group_instance_id || "–"),
      h("td", {}, m.assignments.map((a) => `${a.topic}-${a.partition}`).join(", ") || "–"))));
  const facts = h("div", { class: "facts", "data-testid": "group-facts" },
    h("div", {}, h("span", {}, "state"), h("b", { "data-testid": "group-state" }, g.state)),
    h("div", {}, h("span", {}, "protocol"), g.protocol || "–"),
    h("div", {}, h("span", {}, "members"), g.members.length),
    h("div", {}, h("span", {}, "total lag"), h("b", { "data-testid": "total-lag" }, totalLag)));
  if (!first && page.querySelector("[data-testid=offsets]")) {
    page.querySelector("[data-testid=group-facts]").replaceWith(facts);
    page.querySelector("[data-testid=offsets]").replaceWith(offsets);
    page.querySelector("[data-testid=members]").replaceWith(members);
    return;
  }
  const topics = [...new Set(g.offsets.map((o) => o.topic))];
  const topic = h("select", { name: "topic", "data-testid": "reset-topic" }, topics.map((t) => h("option", { value: t }, t)));
  const to = h("select", { name: "to", "data-testid": "reset-to" }, h("option", { value: "earliest" }, "earliest"), h("option", { value: "latest" }, "latest"), h("option", { value: "offset" }, "offset"));
  const at = h("input", { name: "offset", type: "number", min: 0, value: 0, "data-testid": "reset-offset" });
  page.replaceChildren(
    h("h1", {}, "Group ", h("span", { "data-testid": "group-id" }, g.group_id)),
    facts,
    h("h2", {}, "Members"), members,
    h("h2", {}, "Offsets and lag"), offsets,
    h("h2", { class: "mutating" }, "Reset offsets (the group must have no members)"),
    h("form", {
      class: "inline mutating", "data-testid": "reset-offsets",
      onsubmit: async (e) => {
        e.preventDefault();
        const detail = await api("GET", `/topics/${enc(topic.value)}`);
        const wanted = detail.partitions.map((p) => ({
          topic: topic.value, partition: p.partition,
          offset: to.value === "earliest" ? p.earliest_offset : to.value === "latest" ? p.latest_offset : Number(at.value),
        }));
        await act(() => api("PUT", `/groups/${enc(id)}/offsets`, { offsets: wanted }), true);
      },
    }, h("label", {}, "Topic", topic), h("label", {}, "To", to), h("label", {}, "Offset", at), h("button", { type: "submit" }, "Reset")),
    h("p", { class: "mutating" }, h("button", {
      class: "danger", "data-testid": "delete-group",
      onclick: async () => {
        if (!confirm(`Delete group ${id}?`)) return;
        await act(() => api("DELETE", `/groups/${enc(id)}`));
        location.hash = "#/groups";
      },
    }, "Delete group")));
}

// ---- routing ----

const routes = [
  [/^#\/cluster$/, clusterPage, "cluster"],
  [/^#\/topics$/, topicsPage, "topics"],
  [/^#\/topics\/([^/]+)\/messages$/, messagesPage, "topics"],
  [/^#\/topics\/([^/]+)$/, topicPage, "topics"],
  [/^#\/groups$/, groupsPage, "groups"],
  [/^#\/groups\/([^/]+)$/, groupPage, "groups"],
];

function resolve() {
  const hash = (location.hash || "#/cluster").split("?")[0];
  for (const [re, fn, nav] of routes) {
    const m = hash.match(re);
    if (m) return { fn, nav, args: m.slice(1).map(decodeURIComponent), key: hash };
  }
  return { fn: clusterPage, nav: "cluster", args: [], key: "#/cluster" };
}

// Runs a change, shows its error if any, and redraws the page.
async function act(fn, full) {
  try {
    await fn();
    showError(null);
  } catch (e) {
    showError(e);
    return;
  }
  await show(full !== false);
}

async function show(first) {
  const route = state.route;
  const page = document.getElementById("page");
  try {
    await route.fn(page, route, first);
    page.dataset.loaded = route.key;
    showError(null);
  } catch (e) {
    showError(e);
  }
}

async function navigate() {
  state.route = resolve();
  document.querySelectorAll("header nav a").forEach((a) => a.classList.toggle("active", a.dataset.nav === state.route.nav));
  document.getElementById("page").dataset.loaded = "";
  await show(true);
}

async function start() {
  try {
    state.session = await api("GET", "/session");
    document.body.classList.toggle("read-only", state.session.read_only);
    document.getElementById("session").textContent =
      state.session.principal + (state.session.read_only ? " · read-only" : "");
  } catch (e) {
    showError(e);
  }
  window.addEventListener("hashchange", navigate);
  await navigate();
  setInterval(() => { if (!document.hidden) show(false); }, REFRESH_MS);
  sampleStats();
  setInterval(sampleStats, STATS_MS);
}

start();
