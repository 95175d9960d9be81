"""The fake Slack Web API behaves like Slack where our tests rely on it."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import FakeSlack


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(usergroups={"S0ONCALL": ["U1", "U2"]}) as fake:
        yield fake


def client(slack: FakeSlack, token: str | None = None) -> AsyncWebClient:
    return AsyncWebClient(
        token=token or slack.token, base_url=slack.url, timeout=5, retry_handlers=[]
    )


async def test_auth_test_and_recorded_call(slack: FakeSlack) -> None:
    response = await client(slack).auth_test()
    assert response["ok"] is True
    assert response["team_id"] == slack.team_id
    assert response["user_id"] == slack.bot_user_id
    assert response["bot_id"] == slack.bot_id
    (call,) = slack.calls("auth.test")
    assert call.headers["Authorization"] == f"Bearer {slack.token}"
    assert call.outcome == "ok"
    assert call.status == 200


async def test_wrong_token_and_unknown_method(slack: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as bad:
        await client(slack, token="xoxb-wrong").auth_test()
    assert bad.value.response.status_code == 200
    assert bad.value.response["error"] == "invalid_auth"

    with pytest.raises(SlackApiError) as unknown:
        await client(slack).api_call("nexus.nothing")
    assert unknown.value.response.status_code == 200
    assert unknown.value.response["error"] == "unknown_method"


async def test_message_model_threads_and_edits(slack: FakeSlack) -> None:
    slack.rate_limits = False
    web = client(slack)
    root = await web.chat_postMessage(channel="C1", text="root", blocks=[{"type": "divider"}])
    ts = root["ts"]
    assert abs(float(ts) - time.time()) < 60  # Slack's ts is the time of posting
    for i in range(3):
        reply = await web.chat_postMessage(channel="C1", text=f"reply {i}", thread_ts=ts)
        assert reply["ts"] > ts
    await web.chat_update(channel="C1", ts=ts, text="root v2")
    await web.chat_update(channel="C1", ts=ts, text="root v3")

    with pytest.raises(SlackApiError) as missing:
        await web.chat_update(channel="C2", ts=ts, text="elsewhere")
    assert missing.value.response["error"] == "message_not_found"

    (only_root,) = slack.roots("C1")
    assert only_root.text == "root v3"
    assert only_root.edit_count == 2
    assert only_root.blocks == [{"type": "divider"}]
    assert [m.text for m in slack.thread("C1", ts)] == ["reply 0", "reply 1", "reply 2"]
    assert len({m.ts for m in slack.messages()}) == 4


async def test_history_and_replies_filter_page_and_show_metadata_only_when_asked(
    slack: FakeSlack,
) -> None:
    slack.rate_limits = False
    web = client(slack)
    meta = {"event_type": "nexus_delivery", "event_payload": {"delivery_id": "1"}}
    root = (await web.chat_postMessage(channel="C1", text="root", metadata=meta))["ts"]
    reply = (await web.chat_postMessage(channel="C1", text="reply", thread_ts=root, metadata=meta))[
        "ts"
    ]
    await web.chat_postMessage(channel="C1", text="later")

    plain = await web.conversations_history(channel="C1")
    assert [m["text"] for m in plain["messages"]] == ["later", "root"]  # newest first, no replies
    assert not any("metadata" in m for m in plain["messages"])
    after = await web.conversations_history(channel="C1", oldest=root, include_all_metadata=True)
    assert [m["text"] for m in after["messages"]] == ["later"]
    both = await web.conversations_history(
        channel="C1", oldest=root, inclusive=True, include_all_metadata=True
    )
    assert [m.get("metadata") for m in both["messages"]] == [None, meta]

    first = await web.conversations_history(channel="C1", limit=1)
    assert first["has_more"] is True
    cursor = first["response_metadata"]["next_cursor"]
    second = await web.conversations_history(channel="C1", limit=1, cursor=cursor)
    assert [m["text"] for m in second["messages"]] == ["root"]
    assert second["has_more"] is False

    thread = await web.conversations_replies(channel="C1", ts=root, include_all_metadata=True)
    assert [(m["text"], m.get("metadata")) for m in thread["messages"]] == [
        ("root", meta),
        ("reply", meta),
    ]
    newer = await web.conversations_replies(channel="C1", ts=root, oldest=reply)
    assert [m["text"] for m in newer["messages"]] == ["root"]  # the root always comes first
    with pytest.raises(SlackApiError) as missing:
        await web.conversations_replies(channel="C1", ts="1.000001")
    assert missing.value.response["error"] == "thread_not_found"


async def test_answer_slowly_stores_the_message_before_answering(slack: FakeSlack) -> None:
    web = client(slack)
    slack.answer_slowly(1.0, method="chat.postMessage")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(web.chat_postMessage(channel="C1", text="late"), 0.3)
    assert slack.texts("C1") == ["late"]  # Slack has it; the client never heard
    assert (await web.auth_test())["ok"] is True  # other methods answer at once

    slack.answer_slowly(0)
    started = time.monotonic()
    await web.chat_postMessage(channel="C1", text="prompt")
    assert time.monotonic() - started < 0.5


async def test_other_methods(slack: FakeSlack) -> None:
    web = client(slack)
    assert (await web.usergroups_users_list(usergroup="S0ONCALL"))["users"] == ["U1", "U2"]
    assert (await web.users_info(user="U1"))["user"]["id"] == "U1"
    assert (await web.conversations_info(channel="C1"))["channel"]["id"] == "C1"
    eph = await web.chat_postEphemeral(channel="C1", user="U1", text="psst")
    assert eph["message_ts"]
    view = {"type": "modal", "title": {"type": "plain_text", "text": "t"}, "blocks": []}
    opened = await web.views_open(trigger_id="123.456", view=view)
    view_id = opened["view"]["id"]
    updated = await web.views_update(view_id=view_id, view=view)
    assert updated["view"]["id"] == view_id


async def test_post_message_is_rate_limited_per_channel(slack: FakeSlack) -> None:
    web = client(slack)
    for i in range(3):  # the burst
        await web.chat_postMessage(channel="C1", text=f"m{i}")
    with pytest.raises(SlackApiError) as limited:
        await web.chat_postMessage(channel="C1", text="one too many")
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "1"
    assert limited.value.response["error"] == "ratelimited"
    assert slack.ratelimited_count == 1
    # Another channel has its own bucket.
    await web.chat_postMessage(channel="C2", text="elsewhere")
    assert slack.texts("C1") == ["m0", "m1", "m2"]


async def test_injected_faults(slack: FakeSlack) -> None:
    web = client(slack)
    slack.fail_next(1)
    with pytest.raises(SlackApiError) as failed:
        await web.chat_postMessage(channel="C1", text="a")
    assert failed.value.response.status_code == 500  # non-JSON body, data == {}

    slack.rate_limit_next(1, retry_after=7)
    with pytest.raises(SlackApiError) as limited:
        await web.chat_postMessage(channel="C1", text="a")
    assert limited.value.response.headers["Retry-After"] == "7"

    slack.drop_connections_next(1)
    with pytest.raises(aiohttp.ClientError):
        await web.chat_postMessage(channel="C1", text="a")

    slack.inject_error("channel_not_found", channel="CGONE")
    with pytest.raises(SlackApiError) as gone:
        await web.chat_postMessage(channel="CGONE", text="a")
    assert gone.value.response["error"] == "channel_not_found"

    await web.chat_postMessage(channel="C1", text="finally")
    assert slack.texts() == ["finally"]  # none of the faulted calls took effect
    outcomes = [c.outcome for c in slack.calls("chat.postMessage")]
    assert outcomes == ["http_500", "ratelimited", "dropped", "error:channel_not_found", "ok"]


async def test_hold_and_release(slack: FakeSlack) -> None:
    web = client(slack)
    slack.hold_next(1, skip=1)
    await web.chat_postMessage(channel="C1", text="passes")
    pending = asyncio.create_task(web.chat_postMessage(channel="C1", text="held"))
    await slack.wait_for_async(lambda: slack.held_count == 1)
    assert slack.texts("C1") == ["passes"]
    slack.release()
    assert (await pending)["ok"] is True
    assert slack.texts("C1") == ["passes", "held"]


def test_response_url_records_bodies(slack: FakeSlack) -> None:
    request = urllib.request.Request(
        slack.response_url("abc"),
        data=json.dumps({"text": "done", "replace_original": True}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 200
    assert slack.responses("abc") == [{"text": "done", "replace_original": True}]
    assert slack.responses("other") == []
