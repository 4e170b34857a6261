"""The OTLP sink against a receiver that decodes real OTLP/HTTP protobuf with the
official opentelemetry-proto package: the span, its GenAI attributes, the opt-in
output-message event and the metrics of a known answer."""

from __future__ import annotations

import http.server
import ssl
import threading

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.support import fixtures
from tests.support.brokers import free_port
from tests.support.pki import make_pki
from tests.support.proc import StreamtapProcess
from tests.support.upstream import Reply, Upstream

pytestmark = pytest.mark.e2e

HOST = "api.anthropic.com"
ANSWER = fixtures.anthropic_messages()


class Receiver(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        self.traces: list[ExportTraceServiceRequest] = []
        self.metrics: list[ExportMetricsServiceRequest] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                assert self.headers["Content-Type"] == "application/x-protobuf"
                if self.path == "/v1/traces":
                    receiver.traces.append(ExportTraceServiceRequest.FromString(body))
                elif self.path == "/v1/metrics":
                    receiver.metrics.append(ExportMetricsServiceRequest.FromString(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)


def attributes(kvs) -> dict:
    out = {}
    for kv in kvs:
        value = kv.value
        kind = value.WhichOneof("value")
        out[kv.key] = ([v.string_value for v in value.array_value.values] if kind == "array_value"
                       else getattr(value, kind))
    return out


@pytest.mark.parametrize("content", [True, False])
def test_an_answer_becomes_a_genai_span_event_and_metrics(tmp_path, content):
    pki = make_pki(tmp_path / "pki", [HOST])
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    with Upstream(pki, lambda r: Reply(chunks=[ANSWER.body[i:i + 60] for i in range(0, len(ANSWER.body), 60)])) as up:
        proc = StreamtapProcess(
            ["--certs", str(tmp_path / "certs"), "--api-socket", str(tmp_path / "api.sock"),
             "--sink", f"otlp+http://127.0.0.1:{receiver.server_address[1]}" + ("?content=true" if content else ""),
             "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}",
             "--set", f"streamtap_connect_to={HOST}:443=127.0.0.1:{up.port}"], cwd=tmp_path)
        try:
            ctx = ssl.create_default_context(cafile=str(tmp_path / "certs" / "mitmproxy-ca-cert.pem"))
            with httpx.Client(proxy=proc.proxy_url, verify=ctx, timeout=30) as client:
                r = client.post(f"https://{HOST}/v1/messages",
                                json={"model": "claude-sonnet-4-5", "stream": True, "messages": []})
            assert r.content == ANSWER.body
        finally:
            assert proc.stop() == 0  # shutting down flushes the exporters
    receiver.shutdown()

    spans = [s for req in receiver.traces for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert len(spans) == 1
    span = spans[0]
    assert span.name == "chat claude-sonnet-4-5" and span.kind == span.SPAN_KIND_CLIENT
    attrs = attributes(span.attributes)
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["gen_ai.request.model"] == "claude-sonnet-4-5"
    assert attrs["gen_ai.response.finish_reasons"] == [ANSWER.finish_reason]
    assert attrs["gen_ai.usage.input_tokens"] == ANSWER.usage["input_tokens"]
    assert attrs["gen_ai.usage.output_tokens"] == ANSWER.usage["output_tokens"]
    assert span.end_time_unix_nano > span.start_time_unix_nano
    if not content:  # message content only when the user opts in
        assert not span.events
        assert ANSWER.text.encode() not in b"".join(r.SerializeToString() for r in receiver.traces + receiver.metrics)
        return
    [event] = span.events
    assert event.name == "gen_ai.client.inference.operation.details"
    import json

    [message] = json.loads(attributes(event.attributes)["gen_ai.output.messages"])
    assert message["parts"][0] == {"type": "text", "content": ANSWER.text}
    assert [p["name"] for p in message["parts"][1:]] == [c["name"] for c in ANSWER.tool_calls]

    metrics = {m.name: m for req in receiver.metrics for rm in req.resource_metrics for sm in rm.scope_metrics
               for m in sm.metrics}
    assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration",
            "gen_ai.client.operation.time_to_first_chunk"} <= set(metrics)
    usage = {attributes(p.attributes)["gen_ai.token.type"]: p.sum
             for p in metrics["gen_ai.client.token.usage"].histogram.data_points}
    assert usage == {"input": ANSWER.usage["input_tokens"], "output": ANSWER.usage["output_tokens"]}
