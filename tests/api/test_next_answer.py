"""The next answer (/v1/streams/next, streamtap/next) against a hub fed by hand: never a
warm-up, never a hand-off stub, and the stream that carries a hand-off on, on whichever
host, linked by the hub (request.continues, continued_by)."""

from __future__ import annotations

import asyncio

from proxy_core.api.next_answer import next_answer
from proxy_core.hub.hub import Hub
from proxy_core.payloads import ProviderEvent, StreamEnd, TextDelta

TOPIC = "conversation-turn-tx-2"
HANDOFF = {"conversation_id": "c-2", "turn_exchange_id": "tx-2",
           "options": [{"type": "subscribe_ws_topic", "topic_id": TOPIC}]}


def chatgpt(path: str = "/backend-api/f/conversation", **extra) -> dict:
    return {"host": "chatgpt.com", "path": path, "provider": "chatgpt_web", **extra}


def end(hub: Hub, stream: str, finish: str | None = "stop") -> None:
    hub.publish(stream, StreamEnd(200, finish, {}, ""))


def handoff(hub: Hub) -> str:
    stub = hub.open_stream(chatgpt(), {"status": 200})
    hub.publish(stub.id, ProviderEvent("resume_conversation_token", {"conversation_id": "c-2"}))
    hub.publish(stub.id, ProviderEvent("stream_handoff", HANDOFF))
    end(hub, stub.id, "handoff")
    return stub.id


async def waiting(hub: Hub, host: str | None = "chatgpt.com", timeout: float = 5) -> asyncio.Task:
    task = asyncio.create_task(next_answer(
        hub, hub.last_offset, lambda r: host is None or r.get("host") == host, hub.clock() + timeout,
        lambda: False, 1.0))
    await asyncio.sleep(0)  # it reads from where the ring is now
    return task


def test_the_topic_stream_that_carries_a_handoff_on_is_the_answer_and_names_the_stub():
    async def scenario() -> None:
        hub = Hub()
        task = await waiting(hub)
        stub = handoff(hub)
        assert not task.done()
        topic = hub.open_stream({"host": "ws.chatgpt.com", "path": "/ws/user/[redacted]",
                                 "provider": "chatgpt_web", "topic_id": TOPIC}, {"status": 101},
                                transport="websocket")
        found = await asyncio.wait_for(task, 5)
        assert found is topic and topic.request["continues"] == stub
        assert hub.streams[stub].summary()["continued_by"] == [topic.id]

    asyncio.run(scenario())


def test_a_resume_post_continues_its_conversation_once():
    async def scenario() -> None:
        hub = Hub()
        task = await waiting(hub)
        stub = handoff(hub)
        resume = hub.open_stream(chatgpt("/backend-api/f/conversation/resume", conversation_id="c-2"), {})
        assert await asyncio.wait_for(task, 5) is resume and resume.request["continues"] == stub
        later = hub.open_stream(chatgpt("/backend-api/f/conversation/resume", conversation_id="c-2"), {})
        assert "continues" not in later.request  # another turn's resume continues nothing

    asyncio.run(scenario())


def test_a_chatgpt_stream_that_answers_itself_is_the_answer():
    async def scenario() -> None:
        hub = Hub()
        task = await waiting(hub)
        record = hub.open_stream(chatgpt(), {"status": 200})
        hub.publish(record.id, ProviderEvent("input_message", {"conversation_id": "c-3"}))
        await asyncio.sleep(0.01)
        assert not task.done()  # not yet known: it might hand off
        hub.publish(record.id, TextDelta("Hello"))
        assert await asyncio.wait_for(task, 5) is record

    asyncio.run(scenario())


def test_warmups_are_skipped_and_other_providers_are_answers_at_their_start():
    async def scenario() -> None:
        hub = Hub()
        task = await waiting(hub, host=None)
        hub.open_stream({"host": "api.openai.com", "provider": "openai", "warmup": True}, {})
        record = hub.open_stream({"host": "api.openai.com", "provider": "openai"}, {})
        assert await asyncio.wait_for(task, 5) is record

    asyncio.run(scenario())


def test_a_handoff_whose_continuation_never_comes_is_given_at_the_deadline():
    async def scenario() -> None:
        hub = Hub()
        task = await waiting(hub, timeout=0.2)
        stub = handoff(hub)
        found = await asyncio.wait_for(task, 5)
        assert found is not None and found.id == stub

    asyncio.run(scenario())


def test_a_chatgpt_stream_still_silent_at_the_deadline_is_given():
    async def scenario() -> None:
        hub = Hub()
        task = await waiting(hub, timeout=0.2)
        record = hub.open_stream(chatgpt(), {"status": 200})
        assert await asyncio.wait_for(task, 5) is record

    asyncio.run(scenario())
