"""A sentence-transformers model run with ONNX Runtime: fast queries without importing torch.

The model is exported to ONNX once (with torch, from the local sentence-transformers folder) and
cached; afterwards only `onnxruntime`, `tokenizers` and numpy are needed. Vectors match the
sentence-transformers ones to ~1e-7 (same weights, same tokenizer, mean pooling, L2
normalisation). Both documents and queries go through this path, so vectors stay consistent.

Deliberate simplification: only models that use mean pooling (like all-MiniLM-L6-v2) are
supported; others raise `ModelError` and need ``embedding.backend: torch``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from rag.errors import ModelError

MODEL_FILE, TOKENIZER_FILE, SETTINGS_FILE = "model.onnx", "tokenizer.json", "settings.json"


def export_onnx(model_dir: Path, target: Path) -> Path:
    """Export the transformer of a local sentence-transformers folder to `target` (once)."""
    if (target / SETTINGS_FILE).exists():
        return target
    pooling = (
        json.loads((model_dir / "1_Pooling" / "config.json").read_text()) if (model_dir / "1_Pooling").exists() else {}
    )
    if not pooling.get("pooling_mode_mean_tokens"):
        raise ModelError(
            f"{model_dir}: the ONNX backend supports mean-pooling models only; set embedding.backend: torch"
        )
    max_length = json.loads((model_dir / "sentence_bert_config.json").read_text()).get("max_seq_length", 256)
    import torch
    from transformers import AutoModel, AutoTokenizer

    class LastHiddenState(torch.nn.Module):
        """The transformer with positional inputs and a single output, as the exporter wants."""

        def __init__(self) -> None:
            super().__init__()
            self.model = AutoModel.from_pretrained(str(model_dir)).eval()

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    sample = AutoTokenizer.from_pretrained(str(model_dir))(
        ["a sample", "a longer sample sentence"], padding=True, return_tensors="pt"
    )
    names = ["input_ids", "attention_mask", "token_type_ids"]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".onnx-", dir=target.parent))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer chatter about shape-dependent Python branches
            torch.onnx.export(
                LastHiddenState(),
                tuple(sample[n] for n in names),
                str(staging / MODEL_FILE),
                input_names=names,
                output_names=["last_hidden_state"],
                opset_version=17,
                dynamo=False,
                dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]},
            )
        shutil.copy(model_dir / TOKENIZER_FILE, staging / TOKENIZER_FILE)
        (staging / SETTINGS_FILE).write_text(json.dumps({"max_length": max_length, "pooling": "mean"}))
        staging.replace(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


class OnnxEmbedding(BaseEmbedding):
    """A llama-index embedding backed by an exported ONNX model (normalised mean-pooled vectors)."""

    _session: Any = PrivateAttr()
    _tokenizer: Any = PrivateAttr()

    _model_batch: int = PrivateAttr()

    def __init__(self, folder: Path, model_name: str, model_batch: int = 8):
        # llama-index hands over 512 texts at a time; `_get_text_embeddings` sorts them by token
        # count and runs the model on `model_batch` texts of similar length at a time (little padding).
        super().__init__(model_name=model_name, embed_batch_size=512)
        import onnxruntime
        from tokenizers import Tokenizer

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(
            str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )
        settings = json.loads((folder / SETTINGS_FILE).read_text())
        self._tokenizer = Tokenizer.from_str(_read_json_text(folder / TOKENIZER_FILE))
        self._tokenizer.enable_truncation(settings["max_length"])
        self._tokenizer.no_padding()  # `_run` pads each batch itself
        self._model_batch = model_batch

    @classmethod
    def class_name(cls) -> str:
        return "OnnxEmbedding"

    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalised embeddings of `texts`, one row each (float32)."""
        return self._run(self._tokenizer.encode_batch(texts))

    def _run(self, encodings: list) -> np.ndarray:
        """The model on one batch of tokenised texts, padded to the longest: mean pooling, L2 norm."""
        width = max(len(e.ids) for e in encodings)
        ids, mask = np.zeros((len(encodings), width), dtype=np.int64), np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        hidden = self._session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )[0]
        summed = (hidden * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1)
        return (summed / np.maximum(np.linalg.norm(summed, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def _get_query_embedding(self, query: str) -> list[float]:
        return self.encode([query])[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.encode([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        encodings = self._tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        vectors: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), self._model_batch):
            chunk = order[start : start + self._model_batch]
            for i, vector in zip(chunk, self._run([encodings[i] for i in chunk]), strict=True):
                vectors[i] = vector.tolist()
        return vectors


def _read_json_text(path: Path) -> str:
    """The text of a JSON file, checked to parse: a missing, truncated or garbled file raises
    OSError or ValueError here (`tokenizers` itself raises a bare Exception for all of these)."""
    text = path.read_text(encoding="utf-8")
    json.loads(text)
    return text
