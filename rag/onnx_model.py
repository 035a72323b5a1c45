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
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from rag.errors import ModelError

MODEL_FILE, TOKENIZER_FILE, SETTINGS_FILE = "model.onnx", "tokenizer.json", "settings.json"
INT8_MODEL_FILE = "model.int8.onnx"
CALL_BATCH = 1024  # texts llama-index passes per call: one store batch, sorted by length at once
TOKENS_PER_TEXT = 64  # padded tokens per text a model batch may hold (caps batches of long texts)
# ONNX Runtime threads spin between operators (its default): on a quiet 2-core machine a query embeds in
# 2.3 ms instead of 3.4 ms sleeping, and builds run as fast; sleeping ("0") built 1.7x faster on a busy one
SPIN = "1"


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


def quantize_int8(folder: Path) -> str:
    """The file name of the int8 copy of `folder`'s model, made once with ONNX Runtime's dynamic
    quantisation (int8 weights per output channel, activations quantised per call; per-tensor
    weights lost 2 of 60 DW questions at hit@3): a quarter of the size and faster
    on CPUs with int8 dot-product instructions, with vectors close to, not equal to, float ones."""
    target = folder / INT8_MODEL_FILE
    if not target.exists():
        staging = Path(tempfile.mkdtemp(prefix=".int8-", dir=folder))
        try:
            with _root_logging_untouched():
                from onnxruntime.quantization import QuantType, quantize_dynamic

                quantize_dynamic(
                    folder / MODEL_FILE, staging / INT8_MODEL_FILE, weight_type=QuantType.QInt8, per_channel=True
                )
            (staging / INT8_MODEL_FILE).replace(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return INT8_MODEL_FILE


@contextmanager
def _root_logging_untouched() -> Iterator[None]:
    """Undo what onnxruntime.quantization does to the root logger: its import calls
    `logging.basicConfig(level=INFO)` (every library's debug lines would then print) and the
    quantiser warns there that the model was not pre-processed."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers


class OnnxEmbedding(BaseEmbedding):
    """A llama-index embedding backed by an exported ONNX model (normalised mean-pooled vectors)."""

    _session: Any = PrivateAttr()
    _tokenizer: Any = PrivateAttr()

    _model_batch: int = PrivateAttr()

    def __init__(self, folder: Path, model_name: str, model_batch: int = 8, model_file: str = MODEL_FILE):
        # llama-index hands over CALL_BATCH texts at a time; `_get_text_embeddings` sorts them by
        # token count and runs the model on `model_batch` texts of similar length at a time.
        super().__init__(model_name=model_name, embed_batch_size=CALL_BATCH)
        import onnxruntime
        from tokenizers import Tokenizer

        self._session = onnxruntime.InferenceSession(
            str(folder / model_file), session_options(), providers=["CPUExecutionProvider"]
        )
        settings = json.loads((folder / SETTINGS_FILE).read_text())
        self._tokenizer = Tokenizer.from_str(_read_json_text(folder / TOKENIZER_FILE))
        self._tokenizer.enable_truncation(settings["max_length"])
        self._tokenizer.no_padding()  # `_run` pads each batch itself, to its longest text
        self._model_batch = model_batch

    @classmethod
    def class_name(cls) -> str:
        return "OnnxEmbedding"

    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalised embeddings of `texts`, one row each (float32), in the order given."""
        encodings = self._tokenizer.encode_batch(texts)
        vectors = np.empty((len(texts), self._dimension()), dtype=np.float32)
        for rows in length_batches([len(e.ids) for e in encodings], self._model_batch):
            vectors[rows] = self._run([encodings[i] for i in rows])
        return vectors

    def _dimension(self) -> int:
        return int(self._session.get_outputs()[0].shape[-1])

    def _run(self, encodings: list) -> np.ndarray:
        """The model on one batch of tokenised texts, padded to the longest: mean pooling, L2 norm."""
        lengths = np.array([len(e.ids) for e in encodings])
        mask = (np.arange(lengths.max()) < lengths[:, None]).astype(np.int64)
        ids = np.zeros_like(mask)
        ids[mask.astype(bool)] = [token for e in encodings for token in e.ids]  # row by row, like the mask
        hidden = self._session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )[0]
        summed = np.einsum("btd,bt->bd", hidden, mask.astype(hidden.dtype)) / np.maximum(lengths, 1)[:, None]
        return (summed / np.maximum(np.linalg.norm(summed, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def _get_query_embedding(self, query: str) -> list[float]:
        return self.encode([query])[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.encode([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self.encode(texts).tolist()


def length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indexes into `lengths` grouped into model batches of similar length (shortest first), so a
    batch padded to its longest text wastes little. A batch holds at most `batch_size` texts and,
    for long texts, fewer: at most `batch_size * TOKENS_PER_TEXT` tokens once padded."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    budget = batch_size * TOKENS_PER_TEXT
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < batch_size and (len(batches[-1]) + 1) * lengths[i] <= budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def session_options() -> Any:
    """ONNX Runtime settings for one model call at a time on every core: the operators of a call
    split across `os.cpu_count()` threads (intra-op), no inter-op parallelism (the graph is a
    chain), every graph optimisation, and worker threads that spin between operators (`SPIN`:
    lower query latency; sleeping helps only builds on a machine other processes keep busy)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", SPIN)
    options.log_severity_level = 3
    return options


def _read_json_text(path: Path) -> str:
    """The text of a JSON file, checked to parse: a missing, truncated or garbled file raises
    OSError or ValueError here (`tokenizers` itself raises a bare Exception for all of these)."""
    text = path.read_text(encoding="utf-8")
    json.loads(text)
    return text
