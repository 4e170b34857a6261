"""The API speaks OpenAI: the official `openai` SDK, pointed at the TCP API with its
token, reads a captured Anthropic answer and a captured Gemini answer live
(`streamtap/next`) and replayed (`streamtap/<id>`): text, reasoning and tool calls
equal the originals."""

from __future__ import annotations

import json
import ssl
import threading

import httpx
import pytest
from openai import OpenAI

from tests.support import fixtures
from tests.support.pki import make_pki
from tests.support.proc import StreamtapProcess
from tests.support.upstream import Reply, Upstream

from ..support.api_http import get_json

pytestmark = pytest.mark.e2e

ANTHROPIC = fixtures.anthropic_messages()
GEMINI = fixtures.gemini_sse()
HOSTS = {"api.anthropic.com": ("/v1/messages", ANTHROPIC, "text/event-stream"),
         "generativelanguage.googleapis.com": ("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                                               GEMINI, "text/event-stream")}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    work = tmp_path_factory.mktemp("reemit")
    pki = make_pki(work / "pki", list(HOSTS))

    def serve(request):
        _, fx, ctype = HOSTS[request.headers["host"].split(":")[0]]
        return Reply(headers=[("content-type", ctype)], chunks=[fx.body[i:i + 50] for i in range(0, len(fx.body), 50)])

    with Upstream(pki, serve) as up:
        proc = StreamtapProcess(
            ["--certs", str(work / "certs"), "--api-socket", str(work / "run" / "api.sock"),
             "--api-listen", "127.0.0.1:0", "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}",
             *[a for h in HOSTS for a in ("--set", f"streamtap_connect_to={h}:443=127.0.0.1:{up.port}")]],
            cwd=work)
        try:
            token = (work / "run" / "api-token").read_text().strip()
            client = OpenAI(base_url=f"http://127.0.0.1:{proc.api_port}/v1", api_key=token, max_retries=0,
                            http_client=httpx.Client(timeout=60))  # (openai < 1.55 cannot make one with httpx 0.28)
            yield {"proc": proc, "work": work, "client": client}
        finally:
            proc.stop()


def call_upstream(world, host: str, tag: str) -> None:
    path, fx, _ = HOSTS[host]
    ctx = ssl.create_default_context(cafile=str(world["work"] / "certs" / "mitmproxy-ca-cert.pem"))
    with httpx.Client(proxy=world["proc"].proxy_url, verify=ctx, timeout=30) as c:
        r = c.post(f"https://{host}{path}", json={"stream": True}, headers={"x-streamtap-tag": tag})
    assert r.content == fx.body


def read_live(client: OpenAI, model: str, out: dict) -> None:
    text, reasoning, calls, finish, usage = [], [], [], None, None
    for chunk in client.chat.completions.create(model=model, messages=[{"role": "user", "content": "-"}],
                                                stream=True):
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            delta = choice.delta
            text.append(delta.content or "")
            reasoning.append(getattr(delta, "reasoning_content", None) or "")
            calls += delta.tool_calls or []
            finish = choice.finish_reason or finish
    out.update(text="".join(text), reasoning="".join(reasoning), calls=calls, finish=finish, usage=usage)


@pytest.mark.parametrize("host, finish", [("api.anthropic.com", "tool_calls"),
                                          ("generativelanguage.googleapis.com", "stop")])
def test_the_openai_sdk_reads_a_captured_answer_live_and_replayed(world, host, finish):
    fx = HOSTS[host][1]
    tag = f"reemit-{host.split('.')[0]}"
    got: dict = {}
    reader = threading.Thread(target=read_live, args=(world["client"], f"streamtap/next:tag={tag}", got))
    reader.start()
    # The reader is waiting for the next answer with this tag; now one starts.
    sock = str(world["work"] / "run" / "api.sock")
    _wait_for_waiter(sock)
    call_upstream(world, host, tag)
    reader.join(30)
    assert not reader.is_alive()
    assert got["text"] == fx.text and got["reasoning"] == fx.reasoning
    assert [(c.function.name, json.loads(c.function.arguments)) for c in got["calls"]] == \
        [(c["name"], c["arguments"]) for c in fx.tool_calls]
    assert got["finish"] == finish
    assert got["usage"] is not None and got["usage"].total_tokens == fx.usage["total_tokens"]

    stream_id = next(s["id"] for s in get_json(sock, "/v1/streams")["streams"] if s["request"].get("tag") == tag)
    whole = world["client"].chat.completions.create(model=f"streamtap/{stream_id}", messages=[])
    message = whole.choices[0].message
    assert message.content == fx.text and getattr(message, "reasoning_content", "") == fx.reasoning
    assert whole.choices[0].finish_reason == finish


def _wait_for_waiter(sock: str) -> None:
    import time

    deadline = time.monotonic() + 10
    while get_json(sock, "/healthz")["subscribers"] < 1:
        assert time.monotonic() < deadline, "the SDK's request never arrived"
        time.sleep(0.02)


def test_a_bad_model_is_a_400_the_sdk_reports(world):
    import openai

    with pytest.raises(openai.BadRequestError, match="expected streamtap/next or streamtap/<stream id>"):
        world["client"].chat.completions.create(model="gpt-4o", messages=[])
    with pytest.raises(openai.NotFoundError, match="no stream 'nope'"):
        world["client"].chat.completions.create(model="streamtap/nope", messages=[])


def test_without_the_token_the_sdk_is_refused(world):
    import openai

    client = OpenAI(base_url=f"http://127.0.0.1:{world['proc'].api_port}/v1", api_key="wrong", max_retries=0,
                    http_client=httpx.Client(timeout=60))
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="streamtap/next", messages=[])
