"""The demo stack end to end with the real engines and the official `openai`
client (issue 2, point 3)."""

from __future__ import annotations

import csv
import json

import openai
import pytest

from tests.support import UpProcess, get_json

pytestmark = pytest.mark.engines


@pytest.fixture(scope="module")
def client(demo_up: UpProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=demo_up.url + "/v1", api_key="unused", max_retries=0)


def test_models_lists_both_models_and_aliases(client: openai.OpenAI) -> None:
    models = {m.id: m for m in client.models.list()}
    assert {"smol", "minilm", "smollm2", "all-minilm-l6-v2"} <= set(models)
    extra = models["smol"].model_extra or {}
    assert extra["state"] == "ready" and extra["engine"] == "llamacpp"
    assert (models["minilm"].model_extra or {})["engine"] == "vllm"


def test_chat(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="smol",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=16,
        temperature=0,
    )
    assert reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.completion_tokens > 0


def test_streamed_chat_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Count to five."}],
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(text_chunks) >= 2
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    assert usage.completion_tokens == len(text_chunks)
    assert usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_completions(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="smol", prompt="Once upon a time", max_tokens=8)
    assert reply.choices[0].text


def test_embeddings(client: openai.OpenAI) -> None:
    reply = client.embeddings.create(model="minilm", input=["hello world", "bonjour"])
    assert len(reply.data) == 2
    assert all(len(item.embedding) == 384 for item in reply.data)
    by_alias = client.embeddings.create(model="all-minilm-l6-v2", input="hello world")
    assert by_alias.data[0].embedding == pytest.approx(reply.data[0].embedding, abs=1e-5)


def test_unknown_model_through_openai_client(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-oss-120b", messages=[])
    assert "Available models" in str(info.value)


def test_health_and_status(demo_up: UpProcess) -> None:
    health = get_json(demo_up.url + "/health")
    assert health == {
        "status": "ok",
        "models": {"smol": "ready", "minilm": "ready"},
        "keys": "open",
    }
    result = demo_up.sparkstack("status", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)["models"]}
    for name, engine in (("smol", "llamacpp"), ("minilm", "vllm")):
        assert rows[name]["engine"] == engine and rows[name]["state"] == "ready"
        assert rows[name]["pid"] > 0 and rows[name]["port"] > 0
        assert rows[name]["rss_bytes"] > 50 * 2**20
    table = demo_up.sparkstack("status").stdout
    assert "smol" in table and "MiB" in table


def test_logs_command(demo_up: UpProcess) -> None:
    result = demo_up.sparkstack("logs", "minilm", "-n", "1000000")  # telemetry polls /metrics
    assert result.returncode == 0
    assert "sparkstack starts minilm" in result.stdout


def test_warm_up_and_footprints(demo_up: UpProcess) -> None:
    """Issue 4: each engine got a warm-up request before it was ready, and a
    footprint row puts the measured memory beside the plan."""
    with (demo_up.state_dir / "footprints.csv").open(newline="") as handle:
        rows = {row["model"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"smol", "minilm"}
    assert rows["smol"]["engine_kv_tokens"] == rows["smol"]["planned_kv_tokens"] == "2048"
    for row in rows.values():
        assert int(row["rss_bytes"]) > 50 * 2**20
        assert float(row["warmup_seconds"]) > 0
    output = demo_up.output()
    assert "smol is ready" in output and "warm-up" in output
