"""The live page at GET /: active and recent streams, their text appearing as it
streams, with what each request was and how it went. One self-contained document: no
build step, no external assets (PageHandler's Content-Security-Policy allows none).

It follows GET /v1/events?since=0 and builds everything from the events; filters work
on what it has received, so they need no API parameters. docs/api.md describes it."""

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>streamtap</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<!-- An inline icon: without one, every visit asks for /favicon.ico, which the API does not have. -->
<link rel="icon" href="data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'>
  <circle cx='8' cy='8' r='6' fill='%233b82f6'/></svg>">
<style>
  * { box-sizing: border-box; }
  [hidden] { display: none !important; }
  body { font: 14px/1.45 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }
  code, pre, .host, .path, .id, .tool, .events { font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
  header { position: sticky; top: 0; z-index: 1; padding: 8px 16px; background: #1d2330; color: #fff;
           display: flex; gap: 6px 16px; align-items: center; flex-wrap: wrap; }
  header h1 { font-size: 16px; margin: 0; }
  #status, #count { opacity: .75; font-size: 13px; }
  #filters { margin-left: auto; display: flex; gap: 10px; flex-wrap: wrap; font-size: 12px; }
  #filters select { font: inherit; max-width: 16em; }
  main { padding: 12px 16px; }
  #streams { display: grid; gap: 10px; }
  #empty { max-width: 62em; margin: 32px auto; background: #fff; border: 1px dashed #b8c0cc; border-radius: 6px;
           padding: 14px 20px; }
  #empty h2 { margin: 0 0 6px; font-size: 18px; }
  #empty pre { background: #f1f3f6; padding: 8px 10px; border-radius: 4px; overflow-x: auto; font-size: 12px; }
  #nomatch { color: #5b6473; }
  .stream { background: #fff; border: 1px solid #dde1e7; border-left: 4px solid #9aa3b0; border-radius: 6px;
            padding: 8px 12px; }
  .stream.active { border-left-color: #3b82f6; } .stream.ended { border-left-color: #16a34a; }
  .stream.aborted, .stream.error { border-left-color: #dc2626; }
  .head { display: flex; gap: 8px; align-items: baseline; flex-wrap: wrap; cursor: pointer; font-size: 12px; }
  .head::after { content: "events ▸"; color: #2563eb; }
  .head[aria-expanded="true"]::after { content: "events ▾"; }
  .head > span:empty, .meta > span:empty, .reasoning:empty, .text:empty, .refusal:empty, .tools:empty, .extras:empty,
  .note:empty { display: none; }
  .state { font-weight: 600; font-size: 11px; text-transform: uppercase; letter-spacing: .03em; }
  .stream.active .state { color: #2563eb; } .stream.ended .state { color: #15803d; }
  .stream.aborted .state, .stream.error .state { color: #b91c1c; }
  .provider, .status, .tag { padding: 0 7px; border-radius: 9px; background: #eef1f5; }
  .status.bad { background: #fde2e2; color: #991b1b; }
  .where { word-break: break-all; } .path { color: #5b6473; }
  .model { color: #7c3aed; }
  .stream.warmup { opacity: .55; }
  .id { margin-left: auto; color: #9aa3b0; }
  .meta { display: flex; gap: 4px 16px; flex-wrap: wrap; font-size: 12px; margin-top: 3px; }
  [data-label]::before { content: attr(data-label) " "; color: #8a93a3; }
  .reasoning { white-space: pre-wrap; color: #6b7280; font-style: italic; margin-top: 6px; max-height: 8em;
               overflow: auto; }
  .text { white-space: pre-wrap; margin-top: 6px; max-height: 18em; overflow: auto; }
  .tools { display: grid; gap: 2px; margin-top: 6px; font-size: 12px; }
  .tool { display: flex; gap: 8px; align-items: baseline; }
  .tool .name { font-weight: 600; color: #7c3aed; }
  .tool .args { margin: 0; white-space: pre-wrap; word-break: break-word; }
  .refusal { white-space: pre-wrap; margin-top: 6px; padding: 2px 8px; border-left: 3px solid #dc2626;
             background: #fef2f2; color: #991b1b; max-height: 8em; overflow: auto; }
  .refusal::before { font-weight: 600; }
  .result { display: flex; gap: 8px; align-items: baseline; }
  .result .name { font-weight: 600; color: #6d28d9; white-space: nowrap; }
  .result .name::before { content: "↳ "; }
  .result .content { color: #5b6473; white-space: pre-wrap; word-break: break-word; }
  .extras { display: grid; gap: 1px; margin-top: 6px; font-size: 12px; max-height: 12em; overflow: auto; }
  .extra { display: flex; gap: 8px; align-items: baseline; }
  .extra .kind { font-weight: 600; white-space: nowrap; color: #5b6473; }
  .extra .detail { font-family: ui-monospace, "DejaVu Sans Mono", monospace; white-space: pre-wrap;
                   word-break: break-word; }
  .extra.citation .kind { color: #0e7490; } .extra.media .kind { color: #0f766e; }
  .extra.provider-event .kind { color: #b45309; } .extra.decode-error .kind { color: #b91c1c; }
  .extra.more { color: #8a93a3; font-style: italic; }
  .note { margin-top: 6px; color: #b91c1c; font-size: 12px; }
  .events { margin-top: 8px; border-top: 1px solid #eef1f5; padding-top: 6px; font-size: 11.5px; max-height: 26em;
            overflow: auto; }
  .ev { display: grid; grid-template-columns: 6em 3.5em 10em 1fr; gap: 8px; }
  .ev .data { color: #5b6473; white-space: pre-wrap; word-break: break-all; }
</style></head>
<body>
<header>
  <h1>streamtap</h1><span id="status">connecting…</span><span id="count"></span>
  <nav id="filters">
    <label>provider <select data-filter="provider"><option value="">all</option></select></label>
    <label>host <select data-filter="host"><option value="">all</option></select></label>
    <label>state <select data-filter="state"><option value="">all</option><option>active</option>
      <option>ended</option><option>aborted</option><option>error</option></select></label>
    <label>tag <select data-filter="tag"><option value="">all</option></select></label>
  </nav>
</header>
<main>
  <section id="empty">
    <h2>Waiting for streams</h2>
    <p>Answers appear here as they stream through the proxy (routed hosts only: the AI APIs by
    default, more with <code>--route</code>). Point a client at the proxy, whose address is
    <code>--listen</code> (<code>127.0.0.1:8080</code> by default):</p>
    <pre>eval "$(streamtap env)"     # HTTPS_PROXY, SSL_CERT_FILE ... for SDKs, curl and Node.js in this shell
curl --proxy http://127.0.0.1:8080 --cacert certs/mitmproxy-ca-cert.pem https://api.openai.com/v1/chat/completions ...
chromium --proxy-server=http://127.0.0.1:8080   # browsers: after streamtap ca install</pre>
  </section>
  <p id="nomatch" hidden>No stream matches the filters.</p>
  <div id="streams"></div>
</main>
<script>
"use strict";
// EventSource cannot send an Authorization header, so a token comes in the page's own
// URL (?token=) and goes on to every API request the page makes.
const token = new URLSearchParams(location.search).get("token");
const withToken = (url) => token ? `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : url;

const $ = (id) => document.getElementById(id);
const list = $("streams");
const streams = new Map();  // id -> what the page knows of the stream; oldest first
// The hub keeps its last 1000 finished streams; a page left open all day keeps fewer.
const MAX_CARDS = 500;
const TERMINAL = {"stream.end": "ended", "stream.abort": "aborted", "stream.error": "error"};
// What counts as a first token: the model's own output.
const CONTENT = new Set(["text.delta", "reasoning.delta", "refusal.delta", "tool_call"]);
const COMMON = new Set(["offset", "stream", "seq", "type", "time", "instance"]);  // the envelope, not an event's own
const EXCERPT = 300;  // characters of a tool result's, a frame's or a provider event's data in a card
const MAX_EXTRAS = 200;  // lines of them per card; the events list has all
const filters = {};
for (const select of document.querySelectorAll("select[data-filter]")) filters[select.dataset.filter] = select;

function make(tag, cls, text) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text !== undefined && text !== null) el.textContent = text;
  return el;
}

const pad = (n) => String(n).padStart(2, "0");
function clock(t) {
  const d = new Date(t * 1000);
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  // Left open for days, the page says which day an older stream is from.
  if (d.toDateString() === new Date().toDateString()) return time;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

function setSeconds(el, seconds) {
  seconds = Math.max(0, seconds);
  el.textContent = seconds < 1 ? `${Math.round(seconds * 1000)} ms`
    : seconds < 60 ? `${seconds.toFixed(2)} s` : `${Math.floor(seconds / 60)} min ${Math.floor(seconds % 60)} s`;
  el.title = `${seconds.toFixed(3)} s`;
}

// The request summary may name the model; otherwise an event may (a generic provider's
// frames carry the wire JSON, where chat completions, Responses and Messages put it).
function modelOf(ev) {
  const data = ev.data && typeof ev.data === "object" ? ev.data : {};
  const model = ev.model ?? data.model ?? data.response?.model ?? data.message?.model;
  return typeof model === "string" ? model : null;
}

// Arguments on one line when they read well there, indented when they are long.
function pretty(value) {
  const flat = JSON.stringify(value, null, 1).replace(/\n\s*/g, " ");
  return flat.length <= 100 ? flat : JSON.stringify(value, null, 2);
}

function toolCall(ev) {
  const row = make("div", "tool");
  row.append(make("span", "name", ev.name ?? "(no name)"),
             make("pre", "args", ev.raw_arguments ?? pretty(ev.arguments)));
  if (ev.server) row.title = "run by the provider itself";
  return row;
}

// A value on one line, at most `limit` characters: a string as it is, anything else as JSON.
function excerpt(value, limit = EXCERPT) {
  if (value === undefined || value === null) return "";
  const text = (typeof value === "string" ? value : JSON.stringify(value)).replace(/\s+/g, " ").trim();
  if (text.length <= limit) return text;
  let cut = text.slice(0, limit - 1);
  if (/[\ud800-\udbff]$/.test(cut)) cut = cut.slice(0, -1);  // never half a character
  return cut + "…";
}

// The result of a tool the provider ran, under the tool calls, as its call is.
function toolResult(ev) {
  const row = make("div", "result");
  row.append(make("span", "name", ev.kind ?? "tool_result"), make("span", "content", excerpt(ev.content)));
  row.title = (ev.id ? `result of ${ev.id}: ` : "") + excerpt(ev.content, 4000);
  return row;
}

const sizeOf = (n) => n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(n < 10240 ? 1 : 0)} KB`
  : `${(n / 1048576).toFixed(n < 10485760 ? 1 : 0)} MB`;

// The sources a citation names, whatever the provider's shape: [[title, address], ...].
function sources(data, found = [], depth = 0) {
  if (depth > 6 || found.length > 50 || !data || typeof data !== "object") return found;
  if (!Array.isArray(data)) {
    const pick = (keys) => keys.map((k) => data[k]).find((v) => typeof v === "string" && v) ?? "";
    const url = pick(["url", "uri", "retrievedUrl", "file_id"]), title = pick(["title", "document_title", "filename"]);
    if (url || title) {
      if (!found.some(([t, u]) => t === title && u === url)) found.push([title, url]);
      return found;
    }
  }
  for (const item of Object.values(data)) sources(item, found, depth + 1);
  return found;
}

// Everything but the texts, the tool calls, the usage and the end: one line each, a
// label and what it says ([class, label, detail]). A type the page does not know shows
// as its name and fields.
function extraLine(ev) {
  switch (ev.type) {
    case "citation": {
      const found = sources(ev.data);
      if (!found.length) return ["citation", "cite", `${ev.kind ?? ""} ${excerpt(ev.data)}`];
      const shown = found.slice(0, 3).map((pair) => pair.filter(Boolean).map((p) => excerpt(p, 120)).join(" "));
      return ["citation", "cite", shown.join(" · ") + (found.length > 3 ? ` · +${found.length - 3} more` : "")];
    }
    case "media": {
      const mime = typeof ev.mime_type === "string" ? ev.mime_type : "";
      const size = Number.isInteger(ev.size) ? ` ${sizeOf(ev.size)}` : "";
      return ["media", (mime.includes("/") ? mime.split("/")[0] : "media") + size,
              [mime, ev.kind, ev.uri].filter(Boolean).join(" ")];
    }
    case "signature":
      return ["signature", "signature",
              `${ev.kind ?? ""}${typeof ev.value === "string" ? `, ${ev.value.length} chars` : ""}`];
    case "provider.event": return ["provider-event", "provider.event", `${ev.provider_type} ${excerpt(ev.data)}`];
    case "frame": return ["frame", ev.event ? `frame ${ev.event}` : "frame", excerpt(ev.data)];
    case "decode.error": return ["decode-error", "decode error", `at byte ${ev.at_byte}: ${ev.message ?? ""}`];
    default: {
      const fields = Object.fromEntries(Object.entries(ev).filter(([k]) => !COMMON.has(k)));
      return ["unknown", String(ev.type), Object.keys(fields).length ? excerpt(fields) : ""];
    }
  }
}

function addExtra(s, ev) {
  if (s.extras.children.length >= MAX_EXTRAS) {  // the last line counts the ones left out
    s.extrasLeftOut = (s.extrasLeftOut ?? 0) + 1;
    let more = s.extras.querySelector(".more");
    if (!more) { more = make("div", "extra more"); s.extras.append(more); }
    more.textContent = `… ${s.extrasLeftOut} more (see the events)`;
    return;
  }
  const [cls, kind, detail] = extraLine(ev);
  const row = make("div", `extra ${cls}`);
  row.dataset.type = String(ev.type);
  row.append(make("span", "kind", kind), make("span", "detail", detail.trim()));
  s.extras.append(row);
}

function addOption(select, value) {
  if (!value || [...select.options].some((o) => o.value === value)) return;
  const option = make("option", "", value);
  option.value = value;
  const after = [...select.options].slice(1).find((o) => o.value > value);
  select.insertBefore(option, after ?? null);
}

function addCard(ev) {
  if (streams.has(ev.stream)) return;
  const request = ev.request || {}, response = ev.response || {};
  const s = {id: ev.stream, start: ev.time, last: ev.time, first: null, state: "active", model: request.model,
             decodeErrors: 0, stalled: null, message: null, f: {}};
  const el = s.el = make("section", "stream active");
  Object.assign(el.dataset, {stream: s.id, provider: request.provider ?? "", host: request.host ?? "",
                             tag: request.tag ?? "", state: "active"});
  const head = s.head = make("div", "head");
  head.setAttribute("role", "button");
  head.setAttribute("aria-expanded", "false");
  head.tabIndex = 0;
  head.title = "show this stream's events";
  const where = make("span", "where");
  where.append(s.f.host = make("span", "host", request.host), s.f.path = make("span", "path", request.path));
  for (const [name, value] of [["state", "active"], ["provider", request.provider], ["where"],
                               ["status", response.status], ["model", request.model], ["tag", request.tag],
                               ["id", s.id]]) {
    head.append(name === "where" ? where : (s.f[name] = make("span", name, value)));
  }
  s.f.tag.dataset.label = "tag";
  s.f.status.classList.toggle("bad", response.status >= 400);
  if (ev.transport === "websocket") {  // one card per answer; the status is its connection's 101
    s.f.status.textContent = `WebSocket #${request.answer ?? 0}`;
    if (request.warmup) { el.classList.add("warmup"); s.f.status.textContent += " warm-up"; }
  }
  const meta = make("div", "meta");
  for (const [name, label] of [["started", "started"], ["duration", "running"], ["ttft", "first token"],
                               ["usage", "tokens"], ["finish", "finish"]]) {
    meta.append(s.f[name] = make("span", name));
    s.f[name].dataset.label = label;
  }
  s.f.started.textContent = clock(ev.time);
  s.f.started.title = new Date(ev.time * 1000).toString();
  setSeconds(s.f.duration, 0);
  el.append(head, meta, s.reasoning = make("div", "reasoning"), s.text = make("div", "text"),
            s.refusal = make("div", "refusal"), s.tools = make("div", "tools"), s.extras = make("div", "extras"),
            s.note = make("div", "note"));
  s.refusal.dataset.label = "refusal";
  head.addEventListener("click", () => toggleEvents(s));
  head.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggleEvents(s); }
  });
  streams.set(s.id, s);
  list.prepend(el);
  for (const name of ["provider", "host", "tag"]) addOption(filters[name], el.dataset[name]);
  trim();
  refresh();
}

function trim() {
  for (const [id, s] of streams) {  // oldest first; active streams always stay
    if (streams.size <= MAX_CARDS) break;
    if (s.state !== "active") { s.el.remove(); streams.delete(id); }
  }
}

function showNote(s) {
  const parts = [];
  if (s.stalled !== null) parts.push(`stalled: no bytes for ${s.stalled} s`);
  if (s.decodeErrors) parts.push(`${s.decodeErrors} decode error${s.decodeErrors > 1 ? "s" : ""} (see the events)`);
  if (s.message) parts.push(s.message);
  s.note.textContent = parts.join(" · ");
}

function finish(s, ev) {
  s.state = TERMINAL[ev.type];
  s.el.className = "stream " + s.state;
  s.el.dataset.state = s.state;
  s.f.state.textContent = s.state;
  s.f.duration.dataset.label = "took";
  setSeconds(s.f.duration, ev.time - s.start);
  if (ev.status !== undefined && ev.status !== null) {
    s.f.status.textContent = ev.status;
    s.f.status.classList.toggle("bad", ev.status >= 400);
  }
  s.f.finish.textContent = ev.finish_reason ?? "";
  if (ev.message) s.message = ev.type === "stream.abort" ? `aborted by ${ev.by}: ${ev.message}` : ev.message;
  refresh();
}

function apply(ev) {
  if (ev.type === "stream.start") { addCard(ev); return; }
  // Notices (gap, cutoff, restart) belong to no stream; a stream may also have started
  // before the oldest event the hub still holds.
  const s = ev.stream && streams.get(ev.stream);
  if (!s) return;
  s.last = ev.time;
  if (s.first === null && CONTENT.has(ev.type)) {
    s.first = ev.time;
    setSeconds(s.f.ttft, ev.time - s.start);
  }
  if (!s.model && modelOf(ev)) s.f.model.textContent = s.model = modelOf(ev);
  const wasStalled = s.stalled !== null;
  s.stalled = ev.type === "stream.stall" ? ev.idle : null;
  if (ev.type === "text.delta") s.text.append(ev.text);
  else if (ev.type === "reasoning.delta") s.reasoning.append(ev.text);
  else if (ev.type === "refusal.delta") s.refusal.append(ev.text ?? "");
  else if (ev.type === "tool_call") s.tools.append(toolCall(ev));
  else if (ev.type === "tool_result") s.tools.append(toolResult(ev));
  else if (ev.type === "usage") {
    const n = (v) => v ?? "?";
    s.f.usage.textContent = `${n(ev.input_tokens)} in · ${n(ev.output_tokens)} out · ${n(ev.total_tokens)} total`;
  } else if (Object.hasOwn(TERMINAL, ev.type)) finish(s, ev);  // not `in`: a type "toString" is no end
  else if (ev.type !== "stream.stall") {  // citations, media, frames, provider events, errors, and any new type
    if (ev.type === "decode.error") s.decodeErrors += 1;
    addExtra(s, ev);
  }
  if (wasStalled || s.stalled !== null || ev.type === "decode.error" || s.message) showNote(s);
  const box = s.el.querySelector(".events");
  if (box) addEvent(s, box, ev);
}

// The events of one stream, as the API has them, then live ones as they arrive.
async function toggleEvents(s) {
  let box = s.el.querySelector(".events");
  s.head.setAttribute("aria-expanded", String(!box));
  if (box) { box.remove(); return; }
  box = make("div", "events", "loading the events…");
  box.pending = [];  // live events that arrive while the history loads
  box.lastOffset = 0;
  s.el.append(box);
  try {
    const response = await fetch(withToken(`/v1/streams/${s.id}/events?follow=0&format=ndjson`));
    const body = await response.text();
    if (!response.ok) throw new Error(`${response.status} ${body}`);  // e.g. a stream the hub has forgotten
    const pending = box.pending;
    box.pending = null;
    box.textContent = "";
    for (const line of body.split("\n")) if (line.trim()) addEvent(s, box, JSON.parse(line));
    for (const ev of pending) addEvent(s, box, ev);
  } catch (e) {
    box.pending = null;
    box.textContent = "could not load the events: " + e.message;
  }
}

function addEvent(s, box, ev) {
  if (box.pending) { box.pending.push(ev); return; }
  if (ev.offset <= box.lastOffset) return;  // already there, from the history
  box.lastOffset = ev.offset;
  const {offset, stream, seq, type, time, ...fields} = ev;
  const row = make("div", "ev");
  row.append(make("span", "at", time === undefined ? "" : `+${(time - s.start).toFixed(3)} s`),
             make("span", "seq", seq === null || seq === undefined ? "" : `#${seq}`),
             make("span", "type", type),
             make("span", "data", Object.keys(fields).length ? JSON.stringify(fields) : ""));
  box.append(row);
}

function refresh() {
  let shown = 0, active = 0;
  for (const s of streams.values()) {
    const visible = Object.entries(filters).every(([name, sel]) => !sel.value || s.el.dataset[name] === sel.value);
    s.el.hidden = !visible;
    shown += visible;
    active += s.state === "active";
  }
  $("empty").hidden = streams.size > 0;
  $("nomatch").hidden = streams.size === 0 || shown > 0;
  const plural = streams.size > 1 ? "s" : "";
  $("count").textContent = streams.size === 0 ? ""
    : `${streams.size} stream${plural}, ${active} active` + (shown < streams.size ? `, ${shown} shown` : "");
}

// Filters live in the URL's fragment, so a reload or a bookmark keeps them.
const saved = new URLSearchParams(location.hash.slice(1));
for (const [name, select] of Object.entries(filters)) {
  if (saved.get(name)) { addOption(select, saved.get(name)); select.value = saved.get(name); }
  select.addEventListener("change", () => {
    const chosen = new URLSearchParams();
    for (const [n, sel] of Object.entries(filters)) if (sel.value) chosen.set(n, sel.value);
    history.replaceState(null, "", location.pathname + location.search + (String(chosen) ? "#" + chosen : ""));
    refresh();
  });
}

// An active stream's duration counts up; the page's clock is only trusted past the
// stream's last event, in case it lags streamtap's.
setInterval(() => {
  const now = Date.now() / 1000;
  for (const s of streams.values()) if (s.state === "active") setSeconds(s.f.duration, Math.max(now, s.last) - s.start);
}, 1000);

// Replay what the hub still holds, then follow; EventSource resumes with Last-Event-ID.
const source = new EventSource(withToken("/v1/events?since=0"));
source.onopen = () => { $("status").textContent = "live"; };
source.onerror = () => { $("status").textContent = "reconnecting…"; };
source.onmessage = (m) => apply(JSON.parse(m.data));
</script>
</body></html>
"""
