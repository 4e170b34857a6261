"""The "streamtap" contentview: chosen for routed responses, showing the message."""

from __future__ import annotations

import pytest
from mitmproxy import contentviews
from mitmproxy.test import taddons, tflow

from proxy_core.hub.hub import Hub
from proxy_core.mitm import Routing, StreamCapture
from proxy_core.mitm.contentview import register
from tests.support import fixtures


def routed(host: str, path: str, body: bytes, content_type: str = "text/event-stream"):
    f = tflow.tflow(resp=True)
    f.request.host = host
    f.request.headers["host"] = host
    f.request.path = path
    f.response.headers["content-type"] = content_type
    f.response.content = body
    return f


@pytest.fixture(autouse=True)
def mitmproxy_context():
    register()
    with taddons.context():  # prettify_message reads ctx.options, as inside mitmproxy
        yield


def test_routed_response_is_shown_as_its_message():
    fx = fixtures.anthropic_messages()
    f = routed("api.anthropic.com", "/v1/messages", fx.body)
    result = contentviews.prettify_message(f.response, f)
    assert result.view_name == "streamtap"
    assert fx.text in result.text and fx.reasoning in result.text
    assert "tool call get_weather" in result.text and "São Paulo" in result.text
    assert "finish_reason: tool_use" in result.text


def test_other_responses_keep_their_usual_view():
    f = tflow.tflow(resp=True)
    f.response.headers["content-type"] = "application/json"
    f.response.content = b'{"a": 1}'
    assert contentviews.prettify_message(f.response, f).view_name != "streamtap"
    assert contentviews.prettify_message(f.request, routed("api.openai.com", "/v1/chat/completions", b"")).view_name != "streamtap"


def test_a_streamed_response_shows_what_the_hub_reassembled():
    hub = Hub()
    routing, capture = Routing(), StreamCapture(hub)
    fx = fixtures.openai_chat_text()
    with taddons.context(routing, capture):
        f = routed("api.openai.com", "/v1/chat/completions", b"")
        routing.requestheaders(f)
        capture.responseheaders(f)
        f.response.stream(fx.body)
        f.response.stream(b"")
        f.response.content = b""  # a streamed body is not kept
        result = contentviews.prettify_message(f.response, f)
    assert result.view_name == "streamtap" and fx.text in result.text and "state: ended" in result.text
