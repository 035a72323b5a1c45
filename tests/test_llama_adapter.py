"""Contract tests of rag/llama_adapter.py: the llama-index internals it reads are still there and
still mean what the code assumes. When llama-index changes, these fail first and name the member."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from rag.llama_adapter import PUNKT_MODEL, LlamaIndexChanged, faiss_position_ids, punkt_data_dir
from tests.conftest import ROOT


def test_faiss_positions_name_the_passage_whose_vector_is_stored_there(engine):
    stored = engine.stored
    positions = faiss_position_ids(stored.index)
    assert sorted(positions) == list(range(stored.faiss.ntotal))
    passages = {node.node_id: node for node in stored.nodes}
    assert set(positions.values()) == set(passages)
    model = engine.retriever.embed_model.model
    for position, node_id in positions.items():
        expected = np.asarray(model.get_text_embedding(passages[node_id].text), dtype="float32")
        assert np.allclose(stored.faiss.reconstruct(position), expected, atol=1e-4), (position, node_id)


def test_the_punkt_model_is_bundled_where_the_adapter_looks():
    import nltk.data

    folder = punkt_data_dir()
    assert (folder / PUNKT_MODEL).is_dir()
    assert nltk.data.find(str(PUNKT_MODEL), paths=[str(folder)])


def test_a_changed_index_struct_fails_loudly_naming_the_adapter():
    renamed = SimpleNamespace(index_struct=SimpleNamespace(nodes_by_position={"0": "a"}))
    with pytest.raises(LlamaIndexChanged, match=r"llama-index-core \S+ changed: .*nodes_dict.*rag/llama_adapter.py"):
        faiss_position_ids(renamed)  # type: ignore[arg-type]


def test_bm25_ranks_exactly_as_llama_index_bm25_retriever(engine):
    """Our bm25s index is built the way llama-index's BM25Retriever builds it: same passages, same scores."""
    from llama_index.retrievers.bm25 import BM25Retriever

    retriever = engine.retriever
    reference = BM25Retriever.from_defaults(nodes=engine.stored.nodes, similarity_top_k=retriever.depth)
    lines = (ROOT / "eval" / "dw-icc-sanctions.jsonl").read_text(encoding="utf-8").splitlines()
    items = [json.loads(line) for line in lines if line.strip()]
    questions = [turn["question"] for item in items for turn in item.get("turns", [item])]
    assert len(questions) > 60
    for question in questions:
        expected = [(hit.node.node_id, hit.score) for hit in reference.retrieve(question) if (hit.score or 0) > 0]
        ours = retriever.lexical(question)
        assert [node_id for node_id, _ in ours] == [node_id for node_id, _ in expected], question
        assert [score for _, score in ours] == pytest.approx([score for _, score in expected], rel=1e-6), question
