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


def test_bm25_uses_the_answerer_s_analyser_and_scores_as_a_fresh_bm25s_index(engine):
    """The persisted, memory-mapped BM25 index ranks as one built now from `content_terms`, and
    its vocabulary is exactly the content terms the answerer's term weights count."""
    import json

    import bm25s

    from rag.lexical import content_terms
    from tests.conftest import ROOT

    stored = engine.stored
    texts = [node.text for node in stored.nodes]
    reference = bm25s.BM25()
    reference.index([content_terms(text) for text in texts], show_progress=False)
    assert {t for t in stored.bm25.vocabulary if t} == set(engine.answerer.weights.counts)
    lines = (ROOT / "eval" / "dw-icc-sanctions.jsonl").read_text(encoding="utf-8").splitlines()
    items = [json.loads(line) for line in lines if line.strip()]
    questions = [turn["question"] for item in items for turn in item.get("turns", [item])]
    assert len(questions) > 60
    for question in questions:
        scores = reference.get_scores(content_terms(question) or [""])
        expected = sorted(
            ((stored.position_ids[i], float(s)) for i, s in enumerate(scores) if s > 0), key=lambda p: -p[1]
        )
        ours = engine.retriever.lexical(question)
        assert [score for _, score in ours] == pytest.approx([score for _, score in expected], rel=1e-6), question
        tied = {round(score, 5) for _, score in ours}  # equal scores may come in either order
        assert {(n, round(s, 5)) for n, s in ours} == {(n, round(s, 5)) for n, s in expected if round(s, 5) in tied}


def test_function_words_and_possessives_are_one_term_for_bm25_and_the_answerer(engine):
    from rag.lexical import content_terms

    assert content_terms("Bensouda's visa") == content_terms("bensouda visas")
    hits = engine.retriever.lexical("Bensouda's")
    assert hits and all("Bensouda" in engine.retriever.nodes[node_id].text for node_id, _ in hits)
    assert engine.retriever.lexical("the of and") == []  # function words are no terms at all


def test_a_single_threaded_search_ranks_as_faiss_and_restores_the_thread_count(engine):
    import faiss
    import numpy as np

    from rag.retrieve import single_threaded

    index = engine.stored.faiss
    query = index.reconstruct(3)[None, :]
    threads = faiss.omp_get_max_threads()
    seen = single_threaded(lambda: faiss.omp_get_max_threads())
    scores, positions = single_threaded(index.search, query, 5)
    expected_scores, expected_positions = index.search(query, 5)
    assert seen == 1 and faiss.omp_get_max_threads() == threads
    assert positions.tolist() == expected_positions.tolist() and np.allclose(scores, expected_scores)


def test_each_candidate_knows_how_close_its_neighbours_and_paragraph_are_to_each_query(engine):
    """`neighbourhoods`: per query, the cosine similarity to the sentence before and after the
    candidate in its paragraph (0 at a paragraph's edge) and to the paragraph's closest sentence,
    from the vectors the FAISS index holds."""
    import numpy as np

    retriever = engine.retriever
    queries = ["Who revoked the visa?", "Who revoked the visa? the chief prosecutor"]
    candidates = retriever.retrieve(queries)
    passages = retriever.passages
    for c in candidates:
        position = passages.position(c.node.node_id)
        paragraph = passages.paragraph_positions(c.node.metadata["source"], c.node.metadata["paragraph"])
        assert position in paragraph
        assert len(c.neighbourhoods) == len(queries)
        for query, similarity, (before, after, best) in zip(queries, c.similarities, c.neighbourhoods, strict=True):
            vector = retriever.embed(query)

            def cosine(p: int | None, vector=vector) -> float:
                return 0.0 if p is None else float(np.dot(vector, retriever.faiss.reconstruct(p)))

            assert before == pytest.approx(cosine(passages.neighbour(position, -1)), abs=1e-5)
            assert after == pytest.approx(cosine(passages.neighbour(position, +1)), abs=1e-5)
            assert best == pytest.approx(max(cosine(p) for p in paragraph), abs=1e-5)
            assert best >= similarity - 1e-6
    edges = [c for c in candidates if passages.neighbour(passages.position(c.node.node_id), -1) is None]
    assert edges and all(c.neighbourhoods[0][0] == 0.0 for c in edges)
