#!/usr/bin/env bash
# README command 2: install everything, then lint, type-check, check the import
# contracts and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --dev
echo "==> ruff" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy --strict" >&2
.venv/bin/mypy
echo "==> import contracts (layers point down)" >&2
.venv/bin/lint-imports
echo "==> pytest" >&2
.venv/bin/pytest "$@"
