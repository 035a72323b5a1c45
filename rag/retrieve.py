"""Hybrid retrieval: dense (FAISS) and lexical (BM25) rankings fused by reciprocal rank.

The dense index is the one llama-index's FaissVectorStore persisted; the BM25 index (bm25s) is
persisted beside it and tokenised with the answerer's analyser (`rag.lexical.content_terms`).
Queries go to both directly, without llama-index's retriever layer, whose per-call overhead was
most of the cost of a query. Passages are read from the store only when retrieved.

Dense search finds paraphrases ("travel permission" ~ "visa"); BM25 finds rare names
("Bensouda") that a small embedding model blurs. Each candidate also carries its cosine
similarity to the question, which the answerer uses as evidence of relevance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.config import RetrievalConfig
from rag.lexical import content_terms

if TYPE_CHECKING:
    from llama_index.core.schema import TextNode

    from rag.embedding import LockedEmbedding
    from rag.index_files import StoredIndex
    from rag.passages import Passages


@dataclass(frozen=True)
class Candidate:
    node: TextNode
    similarities: tuple[float, ...]  # cosine similarity between each query and the passage
    fused: float  # reciprocal-rank-fusion score
    dense_rank: int | None = None  # 1-based rank in the main query's dense ranking, None if absent
    bm25_rank: int | None = None  # 1-based rank in the main query's BM25 ranking, None if absent
    bm25: float = 0.0  # the main query's BM25 score (0 when the passage is not in its ranking)
    # per query: its cosine similarity to the sentence before the passage, the one after it (0
    # where the paragraph has none) and the paragraph's most similar sentence (see `neighbourhood`)
    neighbourhoods: tuple[tuple[float, float, float], ...] = ()

    @property
    def similarity(self) -> float:
        """Similarity to the first (main) query."""
        return self.similarities[0]


class NodesById:
    """Passage id -> llama-index node, read from the store on demand (`retriever.nodes[id]`)."""

    def __init__(self, passages: Passages):
        self.passages = passages

    def __getitem__(self, node_id: str) -> TextNode:
        return self.passages.node_by_id(node_id)

    def many(self, node_ids: Sequence[str]) -> list[TextNode]:
        """The nodes of several ids, read from the store together (one query, not one each)."""
        return self.passages.nodes_by_id(node_ids)

    def __len__(self) -> int:
        return len(self.passages)


class HybridRetriever:
    """Dense + BM25 retrieval over one stored index."""

    def __init__(self, stored: StoredIndex, embed_model: LockedEmbedding, config: RetrievalConfig):
        self.config = config
        self.embed_model = embed_model
        self.depth = min(config.candidates, len(stored.passages))
        self.faiss = stored.faiss
        self.bm25 = stored.bm25
        self.nodes = NodesById(stored.passages)
        self.node_ids = stored.position_ids  # FAISS position -> passage id
        self.passages = stored.passages
        self.positions = stored.passages.position  # passage id -> FAISS position (the same order)
        self.embed = lru_cache(maxsize=512)(self._embed)  # repeated questions skip the model

    def _embed(self, text: str) -> np.ndarray:
        vector = np.asarray(self.embed_model.get_query_embedding(text), dtype="float32")
        vector.flags.writeable = False  # shared through the cache
        return vector

    def retrieve(self, queries: list[str], lexical_queries: list[str] | None = None) -> list[Candidate]:
        """Candidates fused over dense and BM25 rankings of every query, with per-query similarities.
        (`lexical_queries`, when given, replace the queries for BM25: `rag train` uses it to see
        how a reworded question ranks.)"""
        vectors = [self.embed(q) for q in queries]
        dense = [self.dense(vector) for vector in vectors]
        lexical = [self.lexical(query) for query in lexical_queries or queries]
        rankings = dense + [[node_id for node_id, _ in scored] for scored in lexical]
        dense_rank = {node_id: rank for rank, node_id in enumerate(dense[0], start=1)}
        bm25 = {node_id: (rank, score) for rank, (node_id, score) in enumerate(lexical[0], start=1)}
        fused = reciprocal_rank_fusion(rankings, self.config.rrf_k)
        nodes = self.nodes.many([node_id for node_id, _ in fused])
        similarities = self.similarities(vectors, nodes)
        candidates = []
        for node, (node_id, score), (own, around) in zip(nodes, fused, similarities, strict=True):
            bm25_rank, bm25_score = bm25.get(node_id, (None, 0.0))
            candidates.append(Candidate(node, own, score, dense_rank.get(node_id), bm25_rank, bm25_score, around))
        return candidates

    def dense(self, vector: np.ndarray) -> list[str]:
        """Passage ids by FAISS inner product (cosine: vectors are normalised).

        The FAISS index is the one llama-index's FaissVectorStore persisted; it is searched
        directly because the llama-index retriever's per-call overhead is most of a query's cost.
        """
        _, positions = single_threaded(self.faiss.search, vector[None, :], self.depth)
        return [self.node_ids[int(p)] for p in positions[0] if p >= 0]

    def lexical(self, query: str) -> list[tuple[str, float]]:
        """(passage id, BM25 score) by score, matches only."""
        return self.bm25.search(query, self.depth)

    def stored_vector(self, node_id: str) -> np.ndarray:
        """A passage's vector as the FAISS index holds it (no re-embedding)."""
        position = self.positions(node_id)
        if position is None:
            raise KeyError(node_id)
        return self.faiss.reconstruct(position)

    def similarities(
        self, vectors: list[np.ndarray], nodes: list[TextNode]
    ) -> list[tuple[tuple[float, ...], tuple[tuple[float, float, float], ...]]]:
        """Per node: each vector's cosine similarity to it, and per vector its similarity to the
        sentences before and after it in its paragraph (0 where there is none) and to the
        paragraph's most similar sentence (the answer often sits next to the sentence that
        matches the question best, or in a paragraph about it). From the vectors FAISS holds,
        read in one batch."""
        plans = []
        for node in nodes:
            position = self.positions(node.node_id)
            if position is None:
                raise KeyError(node.node_id)
            before, after = (self.passages.neighbour(position, step) for step in (-1, +1))
            paragraph = self.passages.paragraph_positions(node.metadata["source"], node.metadata["paragraph"])
            plans.append((position, before, after, {position, *paragraph, before, after} - {None}))
        if not plans:
            return []
        wanted = sorted(set().union(*(group for *_, group in plans)))
        matrix = self.faiss.reconstruct_batch(np.asarray(wanted, dtype="int64")) @ np.vstack(vectors).T
        row = {p: i for i, p in enumerate(wanted)}

        def similarity(p: int | None) -> np.ndarray:
            return np.zeros(len(vectors)) if p is None else matrix[row[p]]

        result = []
        for position, before, after, group in plans:
            best = matrix[[row[p] for p in group]].max(axis=0)
            around = zip(similarity(before), similarity(after), best, strict=True)
            result.append(
                (
                    tuple(float(s) for s in matrix[row[position]]),
                    tuple((float(b), float(a), float(m)) for b, a, m in around),
                )
            )
        return result


class Bm25Index:
    """BM25 over the passages (bm25s), with the one analyser the answerer uses too:
    `rag.lexical.content_terms` (word tokens, function words dropped, Snowball stems). So BM25,
    the answerer's coverage features and the term weights agree on what a term is, and the
    document frequencies persisted beside the index are BM25's vocabulary's.

    Built once per index and saved with it (``bm25/``, bm25s's own format: numpy arrays and
    JSON, no pickle); loaded memory-mapped, so opening a large index costs neither the
    re-tokenising nor the memory of the score matrix."""

    def __init__(self, bm25: Any, node_ids: Sequence[str]):
        self.bm25 = bm25
        self.node_ids = node_ids

    @classmethod
    def build(cls, texts: Iterable[str], node_ids: Sequence[str]) -> tuple[Bm25Index, np.ndarray]:
        """The index of `texts`, and each vocabulary term's document frequency (by term id)."""
        import bm25s

        tokens = [content_terms(text) for text in texts]
        bm25 = bm25s.BM25()
        bm25.index(tokens, show_progress=False)
        df = np.zeros(len(bm25.vocab_dict), dtype="int32")
        for terms in tokens:
            for term in set(terms):
                df[bm25.vocab_dict[term]] += 1
        return cls(bm25, node_ids), df

    @classmethod
    def load(cls, folder: Path, node_ids: Sequence[str]) -> Bm25Index:
        """The index saved in `folder`, memory-mapped. Raises OSError or ValueError (bm25s's
        errors for a missing, truncated or garbled file), or KeyError (a field missing)."""
        import bm25s

        bm25 = bm25s.BM25.load(str(folder), mmap=True, show_progress=False)
        if bm25.scores["num_docs"] != len(node_ids):
            raise ValueError(f"{bm25.scores['num_docs']} passages, expected {len(node_ids)}")
        return cls(bm25, node_ids)

    def save(self, folder: Path) -> None:
        self.bm25.save(str(folder), show_progress=False)

    @property
    def vocabulary(self) -> dict[str, int]:
        """Term -> term id ("" is bm25s's placeholder for passages without a term)."""
        return self.bm25.vocab_dict

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """The `k` best (passage id, score) pairs for `query`, by score, matches only."""
        indexes, scores = self.bm25.retrieve([content_terms(query)], k=min(k, len(self.node_ids)), show_progress=False)
        ranked = zip(indexes[0], scores[0], strict=True)
        return [(self.node_ids[int(i)], float(score)) for i, score in ranked if score > 0]


def single_threaded(search: Callable[..., Any], *args: Any) -> Any:
    """A FAISS search of one query on one OpenMP thread. For one vector, FAISS's threads only wait
    on each other: with the CPUs busy, a flat search of 10,000 passages took 24 ms on two threads
    and 0.6 ms on one. OpenMP's thread count is per calling thread, so this leaves builds (and
    other threads) as they were."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return search(*args)
    finally:
        faiss.omp_set_num_threads(threads)


def reciprocal_rank_fusion(rankings: list[list[str]], k: int = 60) -> list[tuple[str, float]]:
    """Items ordered by the sum of 1/(k + rank) over the rankings they appear in."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: pair[1], reverse=True)
