"""Hybrid retrieval: dense (FAISS via llama-index) and lexical (BM25) rankings fused by reciprocal rank.

Dense search finds paraphrases ("travel permission" ~ "visa"); BM25 finds rare names
("Bensouda") that a small embedding model blurs. Each candidate also carries its cosine
similarity to the question, which the answerer uses as evidence of relevance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rag.config import RetrievalConfig

if TYPE_CHECKING:
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.schema import TextNode

    from rag.store import StoredIndex


@dataclass(frozen=True)
class Candidate:
    node: TextNode
    similarities: tuple[float, ...]  # cosine similarity between each query and the passage
    fused: float  # reciprocal-rank-fusion score

    @property
    def similarity(self) -> float:
        """Similarity to the first (main) query."""
        return self.similarities[0]


class HybridRetriever:
    """Dense + BM25 retrieval over one stored index."""

    def __init__(self, stored: StoredIndex, embed_model: BaseEmbedding, config: RetrievalConfig):
        from llama_index.retrievers.bm25 import BM25Retriever

        depth = min(config.candidates, len(stored.nodes))
        self.config = config
        self.embed_model = embed_model
        self.faiss = stored.faiss
        self.dense = stored.index.as_retriever(similarity_top_k=depth, embed_model=embed_model)
        self.bm25 = BM25Retriever.from_defaults(nodes=stored.nodes, similarity_top_k=depth)
        self.nodes = {node.node_id: node for node in stored.nodes}
        self.positions = {node_id: int(pos) for pos, node_id in stored.index.index_struct.nodes_dict.items()}

    def embed(self, text: str) -> np.ndarray:
        return np.asarray(self.embed_model.get_query_embedding(text), dtype="float32")

    def retrieve(self, queries: list[str]) -> list[Candidate]:
        """Candidates fused over dense and BM25 rankings of every query, with per-query similarities."""
        from llama_index.core.schema import QueryBundle

        vectors = [self.embed(q) for q in queries]
        rankings: list[list[str]] = []
        for query, vector in zip(queries, vectors):
            bundle = QueryBundle(query_str=query, embedding=vector.tolist())
            rankings.append([hit.node.node_id for hit in self.dense.retrieve(bundle)])
            rankings.append([hit.node.node_id for hit in self.bm25.retrieve(bundle) if hit.score > 0])
        fused = reciprocal_rank_fusion(rankings, self.config.rrf_k)
        return [Candidate(self.nodes[node_id], self._similarities(vectors, node_id), score) for node_id, score in fused]

    def _similarities(self, vectors: list[np.ndarray], node_id: str) -> tuple[float, ...]:
        passage = self.faiss.reconstruct(self.positions[node_id])
        return tuple(float(np.dot(vector, passage)) for vector in vectors)


def reciprocal_rank_fusion(rankings: list[list[str]], k: int = 60) -> list[tuple[str, float]]:
    """Items ordered by the sum of 1/(k + rank) over the rankings they appear in."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: pair[1], reverse=True)
