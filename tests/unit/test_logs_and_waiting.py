"""The pieces of issue 15's logs, listing and waiting that need no server: request
ids, access-log lines, tailing and following a file, the load-time store, and the
progress chunk as the official ``openai`` client's own models parse it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

from openai.types.chat import ChatCompletionChunk
from openai.types.completion import Completion

from sparkstack.engines.registry import get_engine
from sparkstack.gateway.access_log import AccessEntry, AccessLog, format_entry
from sparkstack.gateway.context import RequestContext
from sparkstack.gateway.log_follow import Position, read_new, tail_lines
from sparkstack.gateway.request_id import accept_request_id, forwardable, new_request_id
from sparkstack.gateway.wait_progress import progress_event, retry_after
from sparkstack.stack import load_stack_text
from sparkstack.stack.schema import ModelSpec
from sparkstack.supervisor.load_times import KEEP, LoadTimes, entry_key
from sparkstack.supervisor.runtime import ModelRuntime, ModelState

STACK = (
    "models:\n  smol:\n    engine: llamacpp\n    model: /models/smol.gguf\n"
    "    context: 512\n    policy: {policy}\n    idle_timeout: {idle}\n"
)


def smol(policy: str = "on_demand", idle: str = "2s", context: int = 512) -> ModelSpec:
    text = STACK.format(policy=policy, idle=idle).replace("512", str(context))
    return load_stack_text(text, "test").models["smol"]


def test_request_ids_keep_a_sane_client_id_and_replace_others() -> None:
    assert accept_request_id("trace-42.a:b/c") == "trace-42.a:b/c"
    for bad in ("", None, "a b", "x" * 129, "id\r\nx-evil: 1", "ümlaut", 'q"uote'):
        made = accept_request_id(bad)
        assert made != bad and str(uuid.UUID(made)) == made  # UUID-shaped
    first, second = new_request_id(), new_request_id()
    assert first != second and first[:18] == second[:18]
    # an engine that refuses ids other than UUIDs gets only those
    assert forwardable(first, uuid_only=True) and forwardable("trace-1", uuid_only=False)
    assert not forwardable("trace-1", uuid_only=True)


def test_access_lines_are_json_with_every_field() -> None:
    entry = AccessEntry(
        time.time(), "rid-1", "POST", "/v1/chat/completions", 'we"ird\nmodel', "alice",
        200, 1234, 0.0123, 0.004, "http://127.0.0.1:9000",
    )  # fmt: skip
    line = format_entry(entry, {})
    assert line.endswith("\n") and line.count("\n") == 1
    record = json.loads(line)
    assert record["request_id"] == "rid-1" and record["model"] == 'we"ird\nmodel'
    assert record["key"] == "alice" and record["status"] == 200 and record["bytes"] == 1234
    assert record["duration_ms"] == 12.3 and record["ttft_ms"] == 4.0
    assert record["time"].endswith("Z") and record["upstream"] == "http://127.0.0.1:9000"
    bare = json.loads(format_entry(entry._replace(key=None, ttft_s=None, upstream=""), {}))
    assert bare["key"] is None and bare["ttft_ms"] is None and bare["upstream"] is None


async def test_access_log_flushes_in_the_background_and_on_stop(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "gateway.jsonl"
    access = AccessLog(path, flush_s=0.05)
    access.start()
    entry = AccessEntry(time.time(), "a", "GET", "/v1/models", "", None, 200, 10, 0.001, None, "")
    access.add(entry)
    assert not path.exists()  # nothing written on the request's path
    await asyncio.sleep(0.3)
    assert [json.loads(line)["request_id"] for line in path.read_text().splitlines()] == ["a"]
    access.add(entry._replace(request_id="b"))
    await access.stop()
    assert [json.loads(line)["request_id"] for line in path.read_text().splitlines()] == [
        "a", "b"
    ]  # fmt: skip


def test_tail_and_follow_a_file_that_grows_and_is_rotated(tmp_path: Path) -> None:
    path = tmp_path / "smol.log"
    assert tail_lines(path, 10) == (b"", Position())
    path.write_bytes(b"".join(b"line %d\n" % i for i in range(1000)))
    data, at = tail_lines(path, 3)
    assert data == b"line 997\nline 998\nline 999\n"
    assert tail_lines(path, 0)[0] == b""
    assert read_new(path, at)[0] == b""
    with path.open("ab") as handle:
        handle.write(b"new 1\nnew 2\n")
    data, at = read_new(path, at)
    assert data == b"new 1\nnew 2\n"
    path.rename(tmp_path / "smol.log.1")
    path.write_bytes(b"fresh\n")
    assert read_new(path, at)[0] == b"fresh\n"


def test_load_times_learn_a_median_per_fingerprint_and_persist(tmp_path: Path) -> None:
    path = tmp_path / "load_times.json"
    times = LoadTimes(path)
    spec = smol()
    assert times.expected(spec) is None
    assert times.record(spec, 2.0) == 2.0
    times.record(spec, 10.0)  # one slow start
    assert times.record(spec, 2.2) == 2.2
    times.write(times.dumps())
    again = LoadTimes(path)
    assert again.expected(spec) == 2.2
    # what does not change a start shares the entry; what does, starts afresh
    assert entry_key(smol(policy="always_on", idle="9s")) == entry_key(spec)
    assert again.expected(smol(context=4096)) is None
    for seconds in range(KEEP + 3):
        again.record(spec, 1.0 + seconds)
    assert len(again.starts[entry_key(spec)]) == KEEP
    path.write_text("{broken")
    assert LoadTimes(path).expected(spec) is None


def _runtime(expected: float | None, started_ago: float | None) -> ModelRuntime:
    runtime = ModelRuntime(spec=smol(), adapter=get_engine("llamacpp"))
    runtime.state = ModelState.STARTING
    runtime.expected_load_seconds = expected
    if started_ago is not None:
        runtime.load_started = time.monotonic() - started_ago
    return runtime


def test_retry_after_is_the_expected_remainder_at_least_one_second() -> None:
    assert retry_after(_runtime(20.0, 5.0)) == 15
    assert retry_after(_runtime(20.0, None)) == 20
    assert retry_after(_runtime(2.0, 30.0)) == 1  # overdue: still at least 1 s
    assert retry_after(_runtime(None, 1.0)) == 5  # never measured: the default


def test_progress_chunks_parse_as_the_openai_clients_own_types() -> None:
    runtime = _runtime(6.0, 2.0)
    runtime.waiting = 3
    ctx = RequestContext(path="/v1/chat/completions", query="", body=b"", model="smollm2",
                         request_id="rid-7")  # fmt: skip
    event = progress_event(ctx, runtime, 2, 3, 2.04)
    assert event.startswith(b"data: ") and event.endswith(b"\n\n")
    chunk = ChatCompletionChunk.model_validate(json.loads(event[6:]))
    assert chunk.choices[0].delta.content == ""
    progress = (chunk.model_extra or {})["sparkstack_progress"]
    assert progress["queue_position"] == 2 and progress["waiting"] == 3
    assert progress["elapsed_seconds"] == 2.0 and progress["expected_seconds"] == 6.0
    assert 3.5 < progress["remaining_seconds"] <= 4.0 and progress["state"] == "starting"
    ctx.path = "/v1/completions"
    data = json.loads(progress_event(ctx, runtime, 1, 3, 0)[6:])
    # the client builds stream chunks without validation; intermediate ones carry no
    # finish_reason, which its (final-answer) Completion type would refuse
    completion = Completion.construct(**data)
    assert completion.object == "text_completion" and data["choices"][0]["text"] == ""
