"""gpt-oss's tokenizer encodings (``o200k_base``, ``cl100k_base``): vLLM and
TensorRT-LLM fetch them from OpenAI's blob store at start unless
``TIKTOKEN_ENCODINGS_BASE`` names a folder that holds them, which is what an
offline host needs (seeds 000/004 fetched them by hand). sparkstack keeps them
in ``$HF_HOME/tiktoken_encodings`` and points the engines there."""

from __future__ import annotations

import os
from pathlib import Path

from sparkstack.modelfacts.hub import hf_cache_dir

DEFAULT_BASE_URL = "https://openaipublic.blob.core.windows.net/encodings"
# sha256 of each file, as tiktoken's own registry (tiktoken_ext/openai_public.py) pins it.
ENCODINGS: dict[str, str] = {
    "o200k_base.tiktoken": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base.tiktoken": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}


def needs_tiktoken(model: str | None) -> bool:
    """True for gpt-oss models, whose tokenizer is a tiktoken encoding."""
    return model is not None and "gpt-oss" in model.lower()


def encodings_dir() -> Path:
    """``TIKTOKEN_ENCODINGS_BASE`` if it is a folder, else ``$HF_HOME/tiktoken_encodings``."""
    configured = os.environ.get("TIKTOKEN_ENCODINGS_BASE", "")
    if configured and "://" not in configured:
        return Path(configured)
    return hf_cache_dir().parent / "tiktoken_encodings"


def missing_encodings(folder: Path | None = None) -> list[str]:
    folder = folder or encodings_dir()
    return [name for name in ENCODINGS if not (folder / name).is_file()]


def base_url() -> str:
    """Where `pull` fetches the encodings (``SPARKSTACK_TIKTOKEN_URL`` for a mirror)."""
    return os.environ.get("SPARKSTACK_TIKTOKEN_URL", DEFAULT_BASE_URL).rstrip("/")
