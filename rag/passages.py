"""The index's passages in document order: compact arrays in memory, nodes and texts on demand.

Answering needs, for a few dozen retrieved passages, their text, their neighbours (the sentence
before and after in the same paragraph) and the other passages of their paragraph. `Passages`
answers all three from a few numpy arrays (``passages.npz``: passage id, document number,
paragraph number, start and end offset per passage, about 50 bytes a passage), so nothing walks every
passage when the engine starts:

- a passage's text is its document's slice ``text[start:end]`` (the chunker guarantees that each
  node's text is exactly that slice; the documents' texts are the ones the index stored at
  build, or ones read whose sha256 the manifest records); without the documents, the node's own text;
- its llama-index `TextNode` is read from the docstore (`rag.kvstore`) when first asked for;
  `nodes` reads a query's candidates in one SQLite query instead of one each;
- passages of one paragraph are contiguous (document order is (source, start)), so neighbours
  and paragraphs are index arithmetic and binary searches.

`LazyMap` caches what is computed per passage or paragraph, up to a bound, so that per-query
work stays proportional to the candidates, not to the index.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar, overload

import numpy as np

if TYPE_CHECKING:
    from llama_index.core.schema import TextNode

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
ARRAYS = ("ids", "document", "paragraph", "start", "end", "sources", "df")
# the passages' entities and noun phrases (`rag.entities`): one row each, ordered by passage
SPAN_ARRAYS = ("span_passage", "span_start", "span_end", "span_label")
NODE_CACHE = 4096


class Passages:
    """Passages in document order, addressed by position (0..n-1) or by passage id."""

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        read_node: Callable[[str], TextNode],
        texts: dict[str, str] | None = None,
        read_nodes: Callable[[list[str]], dict[str, TextNode]] | None = None,
    ):
        """`read_nodes`, when given, reads several passages' nodes at once (by id)."""
        self.ids: np.ndarray = arrays["ids"]
        self.document: np.ndarray = arrays["document"]
        self.paragraph: np.ndarray = arrays["paragraph"]
        self.start: np.ndarray = arrays["start"]
        self.end: np.ndarray = arrays["end"]
        self.sources: list[str] = [str(s) for s in arrays["sources"]]
        self.df: np.ndarray = arrays.get("df", np.zeros(0, dtype="int32"))
        self.span_rows: dict[str, np.ndarray] = {
            name: arrays.get(name, np.zeros(0, dtype="int32")) for name in SPAN_ARRAYS
        }
        self.texts = texts or {}
        self._read_node = read_node
        self._read_nodes = read_nodes or (lambda ids: {node_id: read_node(node_id) for node_id in ids})
        self._positions: dict[str, int] | None = None
        self._nodes: LazyMap[int, TextNode] = LazyMap(self._node_at, NODE_CACHE)
        change = (self.document[1:] != self.document[:-1]) | (self.paragraph[1:] != self.paragraph[:-1])
        self._run_starts = np.concatenate([[0], np.flatnonzero(change) + 1]).astype("int64")
        run_lengths = np.diff(np.append(self._run_starts, len(self.ids)))
        self._run_of = np.repeat(np.arange(len(self._run_starts), dtype="int32"), run_lengths)  # position -> run

    @classmethod
    def from_nodes(cls, nodes: Sequence[TextNode], texts: dict[str, str] | None = None) -> Passages:
        """Passages over nodes held in memory (already in document order)."""
        by_id = {node.node_id: node for node in nodes}
        return cls(arrays_of(nodes), by_id.__getitem__, texts)

    @classmethod
    def load(
        cls,
        path: Path,
        read_node: Callable[[str], TextNode],
        texts: dict[str, str] | None = None,
        read_nodes: Callable[[list[str]], dict[str, TextNode]] | None = None,
    ) -> Passages:
        """Read ``passages.npz`` (never with pickle). Raises OSError, zipfile.BadZipFile or
        ValueError (a garbled or truncated file), or KeyError (an array missing)."""
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in ARRAYS}
            arrays |= {name: data[name] for name in SPAN_ARRAYS if name in data.files}  # format 8 on
        arrays["ids"] = np.char.decode(arrays["ids"], "ascii") if arrays["ids"].dtype.kind == "S" else arrays["ids"]
        lengths = {len(arrays[name]) for name in ARRAYS if name not in ("sources", "df")}
        if len(lengths) != 1:
            raise ValueError("arrays of different lengths")
        spans = [arrays[name] for name in SPAN_ARRAYS if name in arrays]
        if spans and (
            len({len(a) for a in spans}) != 1
            or np.any(np.diff(spans[0]) < 0)
            or (len(spans[0]) and not 0 <= spans[0].min() <= spans[0].max() < lengths.pop())
        ):
            raise ValueError("garbled span arrays")
        return cls(arrays, read_node, texts, read_nodes)

    def save(self, path: Path) -> None:
        """Write the arrays (uncompressed: they are small and load faster so)."""
        arrays = {name: getattr(self, name) for name in ARRAYS if name not in ("sources", "ids")}
        arrays["ids"] = np.char.encode(self.ids, "ascii")  # hex ids: a byte a character, not four
        arrays |= self.span_rows
        with path.open("wb") as out:
            np.savez(out, sources=np.asarray(self.sources, dtype=str), **arrays)

    def __len__(self) -> int:
        return len(self.ids)

    def position(self, node_id: str) -> int | None:
        """The document-order position of a passage id; None when the index has no such passage."""
        if self._positions is None:
            self._positions = {str(node_id): i for i, node_id in enumerate(self.ids)}
        return self._positions.get(node_id)

    def node(self, position: int) -> TextNode:
        return self._nodes[position]

    def node_by_id(self, node_id: str) -> TextNode:
        position = self.position(node_id)
        if position is None:
            raise KeyError(node_id)
        return self.node(position)

    def nodes_by_id(self, node_ids: Sequence[str]) -> list[TextNode]:
        """The nodes of several passage ids; those not cached are read in one batch (KeyError for
        an id the index does not hold)."""
        positions = []
        for node_id in node_ids:
            position = self.position(node_id)
            if position is None:
                raise KeyError(node_id)
            positions.append(position)
        nodes = self._nodes.get_many(positions, self._nodes_at)
        return [node for node in nodes if node is not None]

    def _node_at(self, position: int) -> TextNode:
        return self._read_node(str(self.ids[position]))

    def _nodes_at(self, positions: list[int]) -> dict[int, TextNode]:
        by_id = self._read_nodes([str(self.ids[p]) for p in positions])
        return {p: by_id[str(self.ids[p])] for p in positions}

    def text(self, position: int) -> str:
        """The passage's text: its document's slice when the document is at hand, else the node's."""
        document = self.texts.get(self.sources[self.document[position]])
        if document is None:
            return self.node(position).text
        return document[int(self.start[position]) : int(self.end[position])]

    def set_spans(self, spans: Sequence[Sequence[tuple[int, int, int]]]) -> None:
        """Store each passage's (start, end, label) spans, in document order (see `rag.entities`)."""
        rows = [(p, *span) for p, passage_spans in enumerate(spans) for span in passage_spans]
        table = np.asarray(rows, dtype="int32").reshape(len(rows), 4)
        self.span_rows = {name: table[:, i].copy() for i, name in enumerate(SPAN_ARRAYS)}

    def spans(self, position: int) -> list[tuple[int, int, int]]:
        """The passage's entities and noun phrases: (start, end, label index), characters of its text."""
        rows = self.span_rows
        low, high = np.searchsorted(rows["span_passage"], [position, position + 1])
        return [
            (int(rows["span_start"][i]), int(rows["span_end"][i]), int(rows["span_label"][i])) for i in range(low, high)
        ]

    def all_spans(self) -> list[list[tuple[int, int, int]]]:
        """Every passage's `spans`, in document order, in one pass."""
        rows = self.span_rows
        table = list(
            zip(rows["span_start"].tolist(), rows["span_end"].tolist(), rows["span_label"].tolist(), strict=True)
        )
        bounds = [0, *np.searchsorted(rows["span_passage"], np.arange(1, len(self))).tolist(), len(table)]
        return [table[low:high] for low, high in zip(bounds, bounds[1 : len(self) + 1], strict=False)]

    def paragraph_positions(self, source: str, paragraph: int) -> range:
        """Positions of the passages of one paragraph (empty when there is none)."""
        try:
            document = self.sources.index(source)
        except ValueError:
            return range(0)
        low, high = np.searchsorted(self.document, [document, document + 1])
        first, last = np.searchsorted(self.paragraph[low:high], [paragraph, paragraph + 1])
        return range(int(low + first), int(low + last))

    def neighbour(self, position: int, step: int) -> int | None:
        """The passage `step` (-1 or +1) away in the same paragraph, or None."""
        run = int(self._run_of[position])  # an array look-up: a binary search per call cost ~1 ms a question
        low = int(self._run_starts[run])
        high = int(self._run_starts[run + 1]) if run + 1 < len(self._run_starts) else len(self)
        other = position + step
        return other if low <= other < high else None


def arrays_of(nodes: Sequence[TextNode]) -> dict[str, np.ndarray]:
    """The compact arrays of nodes in document order (document numbers by first appearance)."""
    sources: dict[str, int] = {}
    for node in nodes:
        sources.setdefault(node.metadata["source"], len(sources))
    return {
        "ids": np.asarray([node.node_id for node in nodes], dtype=str),
        "document": np.asarray([sources[n.metadata["source"]] for n in nodes], dtype="int32"),
        "paragraph": np.asarray([n.metadata["paragraph"] for n in nodes], dtype="int32"),
        "start": np.asarray([n.metadata["start"] for n in nodes], dtype="int64"),
        "end": np.asarray([n.metadata["end"] for n in nodes], dtype="int64"),
        "sources": np.asarray(list(sources), dtype=str),
        "df": np.zeros(0, dtype="int32"),
    }


class LazyMap(Generic[K, V]):
    """A read-only mapping whose values are computed on first use and cached (at most `size`,
    oldest dropped first). `compute` returns None for a key the mapping does not hold."""

    def __init__(self, compute: Callable[[K], V | None], size: int = 16384):
        self._compute = compute
        self._size = size
        self._cache: dict[K, V] = {}
        self._lock = threading.Lock()

    def _lookup(self, key: K) -> V | None:
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        value = self._compute(key)
        if value is not None:
            with self._lock:
                self._put(key, value)
        return value

    def _put(self, key: K, value: V) -> None:
        if len(self._cache) >= self._size:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = value

    def get_many(self, keys: Sequence[K], compute_many: Callable[[list[K]], dict[K, V]]) -> list[V | None]:
        """The values of `keys`; those not cached are computed together by `compute_many` (one
        call instead of one `compute` each) and cached."""
        with self._lock:
            found = {key: self._cache[key] for key in keys if key in self._cache}
        missing = [key for key in dict.fromkeys(keys) if key not in found]
        if missing:
            computed = compute_many(missing)
            with self._lock:
                for key, value in computed.items():
                    self._put(key, value)
            found.update(computed)
        return [found.get(key) for key in keys]

    def __getitem__(self, key: K) -> V:
        value = self._lookup(key)
        if value is None:
            raise KeyError(key)
        return value

    @overload
    def get(self, key: object) -> V | None: ...

    @overload
    def get(self, key: object, default: V) -> V: ...

    def get(self, key: object, default: V | None = None) -> V | None:
        value = self._lookup(key)  # type: ignore[arg-type]
        return default if value is None else value

    def __contains__(self, key: object) -> bool:
        return self._lookup(key) is not None  # type: ignore[arg-type]
