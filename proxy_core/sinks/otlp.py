"""OpenTelemetry over OTLP/HTTP, by the GenAI semantic conventions: a span per answer,
its token usage and timing as metrics, and (opt-in) the output message as an event.

`otlp+http://HOST:PORT[?content=true]`: traces go to `/v1/traces`, metrics to
`/v1/metrics`, through the official SDK's batching exporters (their own threads; the
proxy's loop only records). The span is a CLIENT span named `chat <model>`, timed from
the request's start to the answer's end, with `gen_ai.operation.name`,
`gen_ai.provider.name`, `gen_ai.request.model`, `gen_ai.response.finish_reasons`,
`gen_ai.usage.input_tokens` / `output_tokens`, `server.address`, and streamtap's
`streamtap.stream.id` and `streamtap.instance`. Message content is recorded only with
`content=true`, as the conventions require: it is the event
`gen_ai.client.inference.operation.details` with `gen_ai.output.messages`.
Metrics: `gen_ai.client.token.usage` (by `gen_ai.token.type`),
`gen_ai.client.operation.duration` and `gen_ai.client.operation.time_to_first_chunk`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from proxy_core.hub.envelope import Envelope

logger = logging.getLogger(__name__)

# gen_ai.provider.name for streamtap's providers (the conventions' well-known values).
PROVIDER_NAMES = {"openai": "openai", "anthropic": "anthropic", "gemini": "gcp.gemini", "aistudio": "gcp.gemini",
                  "chatgpt_web": "openai", "claude_web": "anthropic", "gemini_web": "gcp.gemini",
                  "openai_realtime": "openai"}
FIRST_CHUNK = frozenset({"text.delta", "reasoning.delta", "tool_call"})


@dataclass
class _Answer:
    started: float
    request: dict[str, Any]
    first_chunk: float | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    text: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


class OtlpSink:
    """A hub sink (`put` per event) that turns each finished answer into telemetry."""

    def __init__(self, url: str, instance: str) -> None:
        parts = urlsplit(url)
        self.endpoint = f"http://{parts.hostname}:{parts.port or 4318}{parts.path.rstrip('/')}"
        self.content = parse_qs(parts.query).get("content", ["false"])[0].lower() in ("1", "true", "yes")
        self.instance = instance
        self.name = f"otlp {self.endpoint}"
        self.answers: dict[str, _Answer] = {}
        self.exported = 0
        self._tracer: Any = None

    def start(self) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            raise RuntimeError("the otlp sink needs the OpenTelemetry SDK (pip install 'streamtap[sinks]')") from None
        resource = Resource.create({"service.name": "streamtap", "service.instance.id": self.instance})
        self._traces = TracerProvider(resource=resource)
        self._traces.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(f"{self.endpoint}/v1/traces")))
        reader = PeriodicExportingMetricReader(OTLPMetricExporter(f"{self.endpoint}/v1/metrics"),
                                               export_interval_millis=5000)
        self._metrics = MeterProvider(resource=resource, metric_readers=[reader])
        self._tracer = self._traces.get_tracer("streamtap")
        meter = self._metrics.get_meter("streamtap")
        self._tokens = meter.create_histogram("gen_ai.client.token.usage", unit="{token}",
                                              description="Tokens used by an answer, by gen_ai.token.type.")
        self._duration = meter.create_histogram("gen_ai.client.operation.duration", unit="s",
                                                description="From the request to the end of the answer.")
        self._first_chunk = meter.create_histogram("gen_ai.client.operation.time_to_first_chunk", unit="s",
                                                   description="From the request to the answer's first chunk.")

    def put(self, env: Envelope) -> None:
        kind = env.type
        if kind == "stream.start":
            event = json.loads(env.json)
            self.answers[env.stream] = _Answer(env.time, event.get("request") or {})
            return
        answer = self.answers.get(env.stream)
        if answer is None:
            return
        if kind in FIRST_CHUNK and answer.first_chunk is None:
            answer.first_chunk = env.time
        if kind == "usage":
            answer.usage = json.loads(env.json)
        elif self.content and kind == "text.delta":
            answer.text.append(json.loads(env.json)["text"])
        elif self.content and kind == "tool_call":
            call = json.loads(env.json)
            answer.tool_calls.append({"type": "tool_call", "id": call.get("id"), "name": call.get("name"),
                                      "arguments": call.get("arguments")})
        if env.terminal:
            del self.answers[env.stream]
            try:
                self._export(env, answer, json.loads(env.json))
            except Exception:  # telemetry must never break the proxy's path
                logger.exception("streamtap: otlp sink")

    def _export(self, env: Envelope, answer: _Answer, end: dict[str, Any]) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        request = answer.request
        provider = PROVIDER_NAMES.get(request.get("provider", ""), request.get("provider") or "unknown")
        model = request.get("model") or ""
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "server.address": request.get("host", ""),
            "streamtap.stream.id": env.stream,
            "streamtap.instance": self.instance,
        }
        if model:
            attributes["gen_ai.request.model"] = model
        if end.get("finish_reason"):
            attributes["gen_ai.response.finish_reasons"] = [end["finish_reason"]]
        for ours, theirs in (("input_tokens", "gen_ai.usage.input_tokens"),
                             ("output_tokens", "gen_ai.usage.output_tokens")):
            if answer.usage.get(ours) is not None:
                attributes[theirs] = answer.usage[ours]
        span = self._tracer.start_span(f"chat {model}".strip(), kind=SpanKind.CLIENT, attributes=attributes,
                                       start_time=int(answer.started * 1e9))
        if env.type != "stream.end":
            attributes["error.type"] = env.type
            span.set_attribute("error.type", env.type)
            span.set_status(Status(StatusCode.ERROR, end.get("message") or env.type))
        if self.content:
            message = {"role": "assistant", "parts": [{"type": "text", "content": "".join(answer.text)},
                                                      *answer.tool_calls],
                       "finish_reason": end.get("finish_reason") or ""}
            span.add_event("gen_ai.client.inference.operation.details",
                           {"gen_ai.output.messages": json.dumps([message], ensure_ascii=False)},
                           timestamp=int(env.time * 1e9))
        span.end(end_time=int(env.time * 1e9))
        metric_attributes = {k: v for k, v in attributes.items()
                             if k in ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model",
                                      "server.address", "error.type")}
        self._duration.record(env.time - answer.started, metric_attributes)
        if answer.first_chunk is not None:
            self._first_chunk.record(answer.first_chunk - answer.started, metric_attributes)
        for ours, token_type in (("input_tokens", "input"), ("output_tokens", "output")):
            if answer.usage.get(ours) is not None:
                self._tokens.record(answer.usage[ours], {**metric_attributes, "gen_ai.token.type": token_type})
        self.exported += 1

    def stop(self) -> None:
        if self._tracer is None:
            return
        self._traces.shutdown()  # flushes what is batched
        self._metrics.shutdown()
