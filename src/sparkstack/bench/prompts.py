"""Synthetic prompts of a requested token length.

Each prompt is a fresh random word sequence (seeded per request, so no two share
a prefix and the server's prefix cache cannot flatter the numbers), cut to the
exact token count with the model's tokenizer: a local ``tokenizer.json`` (folder,
file, or Hugging Face cache entry) or, failing that, the server's own
``/tokenize`` and ``/detokenize``. Without either, lengths are approximate and the
run says so; the server's ``usage.prompt_tokens`` is recorded either way.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from sparkstack.errors import SparkstackError
from sparkstack.gateway.upstream import UpstreamPool
from sparkstack.modelfacts.hub import cached_snapshot

_WORDS = (
    "the of and to in is was for on that with as by at from his her an were which "
    "river mountain valley city harbor market bridge garden library window morning "
    "evening winter summer autumn spring light shadow stone water fire wind cloud "
    "storm quiet bright ancient modern small large early late slow quick gentle "
    "careful open narrow wide deep high low green blue red golden silver dark warm "
    "cold walked carried watched followed remembered opened listened gathered built "
    "found wrote read spoke answered waited traveled returned measured counted "
    "engine signal number letter question answer story journey lesson method "
    "reason pattern system model memory balance record detail moment season "
    "village island forest meadow coast tower road path field orchard lantern "
    "teacher farmer sailor painter merchant doctor student writer builder keeper"
).split()


class TokenizerError(SparkstackError):
    """No way to count tokens the way the model does."""


@dataclass
class Tokenizer:
    """Encode/decode as the model does; ``source`` says where that came from."""

    source: str
    encode: Callable[[str], Awaitable[list[int]]]
    decode: Callable[[list[int]], Awaitable[str]]


def _tokenizer_file(name: str) -> Path | None:
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if (path / "tokenizer.json").is_file():
        return path / "tokenizer.json"
    snapshot = cached_snapshot(name) if "/" in name and not path.exists() else None
    if snapshot is not None and (snapshot / "tokenizer.json").is_file():
        return snapshot / "tokenizer.json"
    return None


def local_tokenizer(name: str) -> Tokenizer | None:
    """A ``tokenizers`` tokenizer from a file, a model folder or the HF cache."""
    path = _tokenizer_file(name)
    if path is None:
        return None
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer.from_file(str(path))

    async def encode(text: str) -> list[int]:
        return list(hf.encode(text, add_special_tokens=False).ids)

    async def decode(ids: list[int]) -> str:
        return str(hf.decode(ids, skip_special_tokens=True))

    return Tokenizer(f"tokenizer.json at {path}", encode, decode)


async def server_tokenizer(
    pool: UpstreamPool, origin: str, model: str, headers: dict[str, str]
) -> Tokenizer | None:
    """The server's ``/tokenize`` and ``/detokenize`` (vLLM, SGLang, a sparkstack
    gateway in front of either or of llama.cpp), if it answers them."""
    base = {"Content-Type": "application/json", **headers}

    async def call(path: str, payload: dict[str, object]) -> dict[str, object]:
        response = await pool.post(origin, path, json.dumps(payload).encode(), base)
        body = await response.read()
        if response.status != 200:
            raise TokenizerError(f"{path} answered {response.status}")
        data: dict[str, object] = json.loads(body)
        return data

    async def encode(text: str) -> list[int]:
        # "prompt" is vLLM's field, "input" llama.cpp's; each ignores the other.
        data = await call(
            "/tokenize",
            {"model": model, "prompt": text, "input": text, "add_special_tokens": False},
        )
        tokens = data.get("tokens")
        if not isinstance(tokens, list):
            raise TokenizerError("/tokenize gave no tokens")
        return [int(t) for t in tokens]

    async def decode(ids: list[int]) -> str:
        data = await call("/detokenize", {"model": model, "tokens": ids})
        text = data.get("prompt", data.get("text"))
        if not isinstance(text, str):
            raise TokenizerError("/detokenize gave no text")
        return text

    try:
        probe = await encode("hello world")
        if not probe or not (await decode(probe)).strip():
            return None
    except (TokenizerError, ConnectionError, ValueError, TimeoutError):
        return None
    return Tokenizer(f"the server's /tokenize at {origin}", encode, decode)


def _words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(max(1, count)))


async def exact_prompt(tokenizer: Tokenizer | None, length: int, seed: int) -> tuple[str, int]:
    """A prompt of ``length`` tokens and its measured length (approximate: -1)."""
    rng = random.Random(seed)
    if tokenizer is None:
        return _words(rng, round(length * 0.75)), -1
    ids = await tokenizer.encode(_words(rng, length))
    while len(ids) < length:
        ids += await tokenizer.encode(" " + _words(rng, length - len(ids)))
    ids = ids[:length]
    text = await tokenizer.decode(ids)
    for _ in range(4):  # decode -> encode may merge or split tokens at the edges
        count = len(await tokenizer.encode(text))
        if count == length:
            return text, count
        ids = ids[: len(ids) - (count - length)] if count > length else ids + ids[: length - count]
        text = await tokenizer.decode(ids)
    return text, len(await tokenizer.encode(text))


async def build_prompts(
    tokenizer: Tokenizer | None, lengths: list[int], seed: int
) -> list[tuple[str, int]]:
    """One prompt per length, a few built at a time (server tokenizers are HTTP)."""
    gate = asyncio.Semaphore(8)

    async def one(i: int, length: int) -> tuple[str, int]:
        async with gate:
            return await exact_prompt(tokenizer, length, seed * 1_000_003 + i)

    return list(await asyncio.gather(*(one(i, n) for i, n in enumerate(lengths))))
