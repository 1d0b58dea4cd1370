"""Run with the llama.cpp engine's python (llama-cpp-python): load each GGUF once
per context length and let llama.cpp log its KV cache; markers on stderr split
the log by model and setting.

usage: python llamacpp_kv_probe.py JOB_JSON   ({"models": [{"name", "gguf"}], "contexts": [..]})
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

from llama_cpp import Llama  # type: ignore[import-not-found]


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    for model in job["models"]:
        for n_ctx in job["contexts"]:
            sys.stderr.write(f"\nPROBE-START {model['name']} {n_ctx}\n")
            sys.stderr.flush()
            try:
                llm = Llama(model_path=model["gguf"], n_ctx=n_ctx, n_threads=1, verbose=True)
                del llm
                gc.collect()
            except Exception as exc:  # noqa: BLE001  (a refusal is the measurement)
                sys.stderr.write(f"\nPROBE-ERROR {type(exc).__name__}: {exc}\n")
            sys.stderr.write("\nPROBE-END\n")
            sys.stderr.flush()


if __name__ == "__main__":
    main()
