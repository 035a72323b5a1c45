"""Contract tests of rag/llama_adapter.py: the llama-index internals it reads are still there and
still mean what the code assumes. When llama-index changes, these fail first and name the member."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from rag.llama_adapter import PUNKT_MODEL, LlamaIndexChanged, faiss_position_ids, punkt_data_dir


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


def test_faiss_position_i_holds_the_i_th_passage_as_the_arrays_say(engine):
    from rag.llama_adapter import check_positions

    stored = engine.stored
    check_positions(stored.index, stored.position_ids)
    with pytest.raises(LlamaIndexChanged, match="consecutive positions"):
        check_positions(stored.index, list(reversed(stored.position_ids)))


def test_the_punkt_model_is_bundled_where_the_adapter_looks():
    import nltk.data

    folder = punkt_data_dir()
    assert (folder / PUNKT_MODEL).is_dir()
    assert nltk.data.find(str(PUNKT_MODEL), paths=[str(folder)])


def test_a_changed_index_struct_fails_loudly_naming_the_adapter():
    renamed = SimpleNamespace(index_struct=SimpleNamespace(nodes_by_position={"0": "a"}))
    with pytest.raises(LlamaIndexChanged, match=r"llama-index-core \S+ changed: .*nodes_dict.*rag/llama_adapter.py"):
        faiss_position_ids(renamed)  # type: ignore[arg-type]
