import pytest

from rag.retrieve import reciprocal_rank_fusion


def test_reciprocal_rank_fusion_rewards_agreement():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "c", "a"], ["b"]], k=60)
    assert [item for item, _ in fused] == ["b", "a", "c"]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61 + 1 / 61)


def test_names_are_found(engine):
    candidates = engine.retriever.retrieve(["Bensouda"])
    assert "Fatou Bensouda" in candidates[0].node.text


def test_paraphrases_are_found(engine):
    candidates = engine.retriever.retrieve(["Who took away the chief prosecutor's travel permission?"])
    assert "revoked the American visa" in candidates[0].node.text
    assert -1.0 <= candidates[0].similarity <= 1.0


def test_every_query_gets_a_similarity(engine):
    candidates = engine.retriever.retrieve(["Where was she born?", "Where was she born? Who is the chief prosecutor?"])
    assert all(len(c.similarities) == 2 for c in candidates)
    assert len({c.node.node_id for c in candidates}) == len(candidates)
