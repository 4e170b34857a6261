"""The live page at GET /: active and recent streams, their text appearing as it
streams. One self-contained document: no build step, no external assets."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>streamtap</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 14px/1.45 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }
  header { padding: 10px 16px; background: #1d2330; color: #fff; display: flex; gap: 16px; align-items: baseline; }
  header h1 { font-size: 16px; margin: 0; }
  #status { opacity: .75; }
  main { padding: 12px 16px; display: grid; gap: 10px; }
  .stream { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; padding: 8px 12px; }
  .stream.active { border-color: #3b82f6; }
  .head { display: flex; gap: 10px; font-size: 12px; color: #5b6473; flex-wrap: wrap; }
  .state { font-weight: 600; }
  .stream.ended .state { color: #15803d; } .stream.aborted .state, .stream.error .state { color: #b91c1c; }
  .reasoning { white-space: pre-wrap; color: #6b7280; font-style: italic; margin-top: 6px; }
  .text { white-space: pre-wrap; margin-top: 6px; }
  .tools { font-family: ui-monospace, monospace; font-size: 12px; color: #7c3aed; margin-top: 6px; }
  .reasoning:empty, .tools:empty { display: none; }
</style></head>
<body>
<header><h1>streamtap</h1><span id="status">connecting…</span></header>
<main id="streams"></main>
<script>
"use strict";
const list = document.getElementById("streams");
const status = document.getElementById("status");
const token = new URLSearchParams(location.search).get("token");
const auth = token ? "token=" + encodeURIComponent(token) : "";

function card(id, request) {
  let el = document.querySelector(`[data-stream="${id}"]`);
  if (el) return el;
  el = document.createElement("section");
  el.className = "stream active";
  el.dataset.stream = id;
  const head = document.createElement("div");
  head.className = "head";
  for (const [cls, value] of [["state", "active"], ["host", request.host], ["provider", request.provider],
                              ["tag", request.tag ? "tag " + request.tag : ""], ["id", id]]) {
    const span = document.createElement("span");
    span.className = cls;
    span.textContent = value || "";
    head.appendChild(span);
  }
  el.appendChild(head);
  for (const cls of ["reasoning", "text", "tools"]) {
    const div = document.createElement("div");
    div.className = cls;
    el.appendChild(div);
  }
  list.prepend(el);
  return el;
}

function apply(ev) {
  if (ev.type === "stream.start") { card(ev.stream, ev.request); return; }
  const el = ev.stream && document.querySelector(`[data-stream="${ev.stream}"]`);
  if (!el) return;
  if (ev.type === "text.delta") el.querySelector(".text").append(ev.text);
  else if (ev.type === "reasoning.delta") el.querySelector(".reasoning").append(ev.text);
  else if (ev.type === "tool_call") el.querySelector(".tools").append(`${ev.name}(${JSON.stringify(ev.arguments)})\\n`);
  else if (["stream.end", "stream.abort", "stream.error"].includes(ev.type)) {
    const state = {"stream.end": "ended", "stream.abort": "aborted", "stream.error": "error"}[ev.type];
    el.className = "stream " + state;
    el.querySelector(".state").textContent = state + (ev.finish_reason ? " · " + ev.finish_reason : "")
      + (ev.message ? " · " + ev.message : "");
  }
}

// Replay what the hub still holds, then follow; EventSource resumes with Last-Event-ID.
const source = new EventSource("/v1/events?since=0" + (auth ? "&" + auth : ""));
source.onopen = () => { status.textContent = "live"; };
source.onerror = () => { status.textContent = "reconnecting…"; };
source.onmessage = (m) => apply(JSON.parse(m.data));
</script>
</body></html>
"""
