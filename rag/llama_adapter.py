"""The one module that relies on llama-index internals: members outside its documented API.

- `faiss_position_ids` reads a VectorStoreIndex's ``index_struct.nodes_dict`` (FAISS position ->
  passage id). llama-index's own vector retriever reads it too; there is no public accessor.
  `check_positions` uses it when an index is built, to check that FAISS position i holds the
  i-th passage inserted (what the persisted passage arrays rely on).
- `punkt_data_dir` is the NLTK data folder bundled in llama-index-core (``_static/nltk_cache``),
  so sentence splitting never downloads anything.

`tests/test_llama_adapter.py` checks both against the installed llama-index. When llama-index
changes, those tests (and these functions, at run time) fail with `LlamaIndexChanged` naming what
moved; this module is then the only code to update.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llama_index.core import VectorStoreIndex

PUNKT_MODEL = Path("tokenizers") / "punkt_tab" / "english"


class LlamaIndexChanged(RuntimeError):
    """The installed llama-index no longer has an internal member this module relies on."""


def faiss_position_ids(index: VectorStoreIndex) -> dict[int, str]:
    """FAISS position -> passage id, for an index stored in a FaissVectorStore."""
    nodes_dict = getattr(index.index_struct, "nodes_dict", None)
    if not isinstance(nodes_dict, dict):
        raise _changed(f"{type(index.index_struct).__name__} has no nodes_dict (FAISS position -> node id)")
    return {int(position): node_id for position, node_id in nodes_dict.items()}


def check_positions(index: VectorStoreIndex, node_ids: list[str]) -> None:
    """Check that FAISS position i holds passage ``node_ids[i]`` (llama-index appends nodes to the
    FaissVectorStore in the order inserted): the persisted arrays then map positions to ids, and
    a loaded index need not decode the index struct to answer."""
    positions = faiss_position_ids(index)
    if positions != dict(enumerate(node_ids)):
        raise _changed("FaissVectorStore no longer stores inserted nodes at consecutive positions in order")


def punkt_data_dir() -> Path:
    """The NLTK data folder bundled with llama-index-core, holding the English Punkt model."""
    import llama_index.core

    folder = Path(llama_index.core.__file__).parent / "_static" / "nltk_cache"
    if not (folder / PUNKT_MODEL).is_dir():
        raise _changed(f"no bundled NLTK Punkt model in {folder / PUNKT_MODEL}")
    return folder


def _changed(problem: str) -> LlamaIndexChanged:
    installed = version("llama-index-core")
    return LlamaIndexChanged(f"llama-index-core {installed} changed: {problem}; update rag/llama_adapter.py")
