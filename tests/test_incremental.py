"""The incremental index: `rag add`, `rag remove`, `rag docs`, and updates that embed only what changed.

Everything runs for real (the packaged embedding model through ONNX Runtime, FAISS, BM25). The
passages a build embeds are counted where llama-index hands texts to the model, and compared
with an independent chunking of the document.
"""

import json
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import onnxruntime
import pytest

from rag.chunking import chunk
from rag.engine import Engine
from rag.errors import DocumentError
from rag.ingest import read_document
from rag.llama_adapter import faiss_position_ids
from rag.onnx_model import OnnxEmbedding
from rag.passages import Passages
from rag.store import (
    FORMAT_VERSION,
    INDEX_FILES,
    MANIFEST,
    OLD_FILES,
    add_documents,
    find_document,
    read_manifest,
    remove_document,
)
from tests.conftest import ROOT

LICENSE = ROOT / "eval" / "docs" / "python-license.txt"
SHOWN = "eval/docs/python-license.txt"  # how the CLI, run in the checkout, names it
DW_QUESTIONS = ["who revoked Bensouda's visa?", "What did Mike Pompeo call the court?", "Which allies could be next?"]
LICENSE_QUESTION = "Who created Python?"


def passage_count(path) -> int:
    """The passages of a document, counted by chunking it (what a build must embed for it)."""
    return len(chunk(read_document(path), str(path.resolve())))


def rag(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rag", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def embedded_and_reused(stdout: str) -> tuple[int, int]:
    match = re.search(r"Embedded (\d+) passages, reused (\d+)", stdout)
    assert match, stdout
    return int(match[1]), int(match[2])


def answer_and_citations(stdout: str) -> dict:
    """What `ask --json` says and quotes, without the per-run id and latency, and without the
    ranker's scores: BM25 and IDF statistics span every indexed passage, so adding a document
    shifts scores slightly even though the first document's vectors are untouched."""
    data = json.loads(stdout)
    citations = [{k: v for k, v in c.items() if k != "score"} for c in data["citations"]]
    return {"answer": data["answer"], "abstained": data["abstained"], "citations": citations}


@pytest.fixture
def copied(engine, tmp_path):
    """A private copy of the session's DW index and a config pointing at it."""
    index_dir = tmp_path / "index"
    shutil.copytree(engine.config.index_dir, index_dir)
    return engine.config.model_copy(update={"index_dir": index_dir})


@pytest.fixture
def embed_model(engine):
    return engine.retriever.embed_model.model


@pytest.fixture
def counted(monkeypatch):
    """The number of texts llama-index hands to the embedding model for indexing."""
    texts: list[str] = []
    original = OnnxEmbedding._get_text_embeddings

    def counting(self, batch):
        texts.extend(batch)
        return original(self, batch)

    monkeypatch.setattr(OnnxEmbedding, "_get_text_embeddings", counting)
    return texts


def vectors_of(stored, source: str) -> dict[str, np.ndarray]:
    """The stored FAISS vector of every passage of one document, by passage id."""
    ids = {n.node_id for n in stored.nodes if n.metadata["source"] == source}
    return {
        node_id: stored.faiss.reconstruct(pos)
        for pos, node_id in faiss_position_ids(stored.index).items()
        if node_id in ids
    }


def test_rag_add_embeds_only_the_new_document_and_keeps_the_first_ones_answers(article, tmp_path):
    where = ["--doc", str(article), "--index-dir", str(tmp_path / "index")]
    assert rag("index", *where).returncode == 0
    before = [answer_and_citations(rag("ask", "--json", *where, q).stdout) for q in DW_QUESTIONS]

    started = time.perf_counter()
    added = rag("add", *where, str(LICENSE))
    elapsed = time.perf_counter() - started
    assert added.returncode == 0, added.stderr
    embedded, reused = embedded_and_reused(added.stdout)
    print(f"\nrag add of {LICENSE.name}: {embedded} passages embedded, {reused} reused, {elapsed:.1f} s")
    assert (embedded, reused) == (passage_count(LICENSE), passage_count(article))
    assert f"added     {SHOWN}: {embedded} passages" in added.stdout

    after = [answer_and_citations(rag("ask", "--json", *where, q).stdout) for q in DW_QUESTIONS]
    assert after == before
    license_answer = json.loads(rag("ask", "--json", *where, LICENSE_QUESTION).stdout)
    assert "Guido van Rossum" in license_answer["answer"]
    assert license_answer["citations"][0]["source"].endswith(LICENSE.name)

    again = rag("add", *where, str(LICENSE))  # unchanged: nothing to embed
    assert embedded_and_reused(again.stdout) == (0, embedded + reused) and "unchanged" in again.stdout


def test_rag_add_takes_folders_and_globs_like_doc(article, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "garden.txt").write_text("The garden committee meets on Tuesdays.\n", encoding="utf-8")
    (folder / "budget.md").write_text("# Budget\n\nThe budget for seeds is forty euros.\n", encoding="utf-8")
    (folder / "minutes.txt").write_text("The minutes were approved without changes.\n", encoding="utf-8")
    where = ["--doc", str(article), "--index-dir", str(tmp_path / "index")]
    added = rag("add", *where, str(folder / "*.md"))
    assert added.returncode == 0, added.stderr
    assert "budget.md" in added.stdout and "garden.txt" not in added.stdout
    added = rag("add", *where, str(folder))
    assert added.returncode == 0, added.stderr
    assert "garden.txt" in added.stdout and "minutes.txt" in added.stdout
    assert len(rag("docs", *where).stdout.splitlines()) == 1 + 4


def test_rag_docs_lists_what_doc_names_even_on_a_new_index(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("The garden committee meets on Tuesdays.\n", encoding="utf-8")
    listed = rag("docs", "--doc", str(notes), "--index-dir", str(tmp_path / "index"))
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert len(rows) == 1 and rows[0].split()[0].endswith("notes.txt") and rows[0].split()[-1] == "--doc"


def test_rag_docs_lists_documents_passages_pages_and_dates(article, tmp_path):
    where = ["--doc", str(article), "--index-dir", str(tmp_path / "index")]
    assert rag("add", *where, str(LICENSE)).returncode == 0
    listed = rag("docs", *where)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["document", "passages", "pages", "added", "from"]
    assert len(rows) == 2
    for row, name, passages, origin in (
        (rows[0], article.name, passage_count(article), "--doc"),  # named by --doc, not the config
        (rows[1], LICENSE.name, passage_count(LICENSE), "rag add"),
    ):
        assert re.search(
            rf"{re.escape(name)}\s+{passages}\s+-\s+20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC\s+{origin}$", row
        ), row


def test_rag_remove_drops_the_document_and_the_other_still_answers(article, tmp_path):
    where = ["--doc", str(article), "--index-dir", str(tmp_path / "index")]
    assert rag("add", *where, str(LICENSE)).returncode == 0
    removed = rag("remove", *where, LICENSE.name)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.startswith(f"Removed {SHOWN} ({passage_count(LICENSE)} passages)")
    asked = json.loads(rag("ask", "--json", *where, LICENSE_QUESTION).stdout)
    assert asked["citations"] and all(c["source"].endswith(article.name) for c in asked["citations"])
    assert "Guido" not in asked["answer"]
    assert "revoked the American visa" in json.loads(rag("ask", "--json", *where, DW_QUESTIONS[0]).stdout)["answer"]
    assert LICENSE.name not in rag("docs", *where).stdout


def test_rag_remove_refuses_unknown_ambiguous_and_configured_names(article, tmp_path):
    where = ["--doc", str(article), "--index-dir", str(tmp_path / "index")]
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "notes.txt").write_text(f"Notes of team {folder}. The meeting is on Monday.\n")
        assert rag("add", *where, str(tmp_path / folder / "notes.txt")).returncode == 0
    for name, message in (
        ("nothing.txt", "no indexed document is called 'nothing.txt'; the index holds: "),
        ("notes.txt", "'notes.txt' is ambiguous: it names"),
        (article.name, "is a configured document"),
    ):
        result = rag("remove", *where, name, cwd=tmp_path)
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
    assert rag("remove", *where, "a/notes.txt", cwd=tmp_path).returncode == 0  # a path is never ambiguous
    assert find_document(read_manifest(tmp_path / "index"), "notes.txt")["source"] == str(tmp_path / "b" / "notes.txt")


def test_updating_a_changed_document_re_embeds_only_its_passages(copied, embed_model, counted, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("The committee met on Tuesday. It adopted a budget of 5 million euros.\n", encoding="utf-8")
    add_documents(copied, [notes, LICENSE], embed_model)
    before = add_documents(copied, [], embed_model).stored
    counted.clear()
    notes.write_text("The committee met on Tuesday. It adopted a budget of 7 million euros. Then it left.\n")
    result = add_documents(copied, [notes], embed_model)
    assert [action for _, action in result.actions] == ["updated"]
    assert len(counted) == result.counts.embedded == passage_count(notes) == 3
    assert result.counts.reused == passage_count(LICENSE) + passage_count(copied.documents[0])
    for source in (str(LICENSE), str(copied.documents[0])):
        kept, now = vectors_of(before, source), vectors_of(result.stored, source)
        assert kept.keys() == now.keys() and all(np.array_equal(kept[i], now[i]) for i in kept)  # bit for bit
    assert "7 million" in Engine.open(copied).ask("What budget did the committee adopt?").text


def test_a_change_of_configured_documents_embeds_only_the_new_one(copied, counted, tmp_path):
    second = tmp_path / "license.txt"
    shutil.copy(LICENSE, second)
    messages: list[str] = []
    engine = Engine.open(copied.model_copy(update={"documents": [*copied.documents, second]}), progress=messages.append)
    assert len(counted) == passage_count(second)
    assert any(
        f"({passage_count(second)} embedded, {passage_count(copied.documents[0])} reused)" in m for m in messages
    )
    assert "Guido van Rossum" in engine.ask(LICENSE_QUESTION).text


def test_added_documents_survive_a_config_change_and_a_rebuild(copied, embed_model, tmp_path):
    add_documents(copied, [LICENSE], embed_model)
    other = tmp_path / "other.txt"
    other.write_text("The lighthouse keeper retired in 1987 after forty years.\n", encoding="utf-8")
    changed = copied.model_copy(update={"documents": [other]})  # the DW article leaves the config
    engine = Engine.open(changed)
    assert [d.path.name for d in engine.documents] == ["other.txt", LICENSE.name]
    assert "Guido van Rossum" in engine.ask(LICENSE_QUESTION).text
    rebuilt = Engine.open(changed, rebuild=True)
    assert [d.path.name for d in rebuilt.documents] == ["other.txt", LICENSE.name]
    entries = read_manifest(copied.index_dir)["documents"]
    assert [(e["origin"], e["passages"]) for e in entries] == [("config", 1), ("added", passage_count(LICENSE))]


def test_an_added_document_that_disappeared_names_the_remedy(copied, embed_model, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("The committee met on Tuesday.\n", encoding="utf-8")
    add_documents(copied, [notes], embed_model)
    notes.unlink()
    with pytest.raises(DocumentError, match=r"added with `rag add`.*python -m rag remove notes.txt"):
        Engine.open(copied)
    stored, entry = remove_document(copied, "notes.txt", embed_model)
    assert entry["source"] == str(notes) and len(stored.documents) == 1
    Engine.open(copied)


def test_adding_a_copy_of_an_indexed_document_is_refused(copied, embed_model, tmp_path):
    duplicate = tmp_path / "copy.txt"
    shutil.copy(copied.documents[0], duplicate)
    with pytest.raises(DocumentError, match="has the same content as"):
        add_documents(copied, [duplicate], embed_model)


@pytest.mark.parametrize("where", ["embedding", "persisting"])
def test_an_interrupted_add_leaves_the_previous_index_intact(copied, embed_model, monkeypatch, where):
    """Ctrl-C while the new document's passages are embedded (the second ONNX Runtime call) or while
    the new index files are written (the passage arrays, written last): the old index still answers."""
    manifest_before = (copied.index_dir / MANIFEST).read_bytes()
    calls = []

    def interrupt(original):
        def wrapper(*args, **kwargs):
            calls.append(1)
            if where == "persisting" or len(calls) == 2:
                raise KeyboardInterrupt
            return original(*args, **kwargs)

        return wrapper

    if where == "embedding":
        session = onnxruntime.InferenceSession
        monkeypatch.setattr(session, "run", interrupt(session.run))
    else:
        monkeypatch.setattr(Passages, "save", interrupt(Passages.save))
    with pytest.raises(KeyboardInterrupt):
        add_documents(copied, [LICENSE], embed_model)
    monkeypatch.undo()
    assert calls
    assert (copied.index_dir / MANIFEST).read_bytes() == manifest_before
    assert not list(copied.index_dir.glob(".build-*"))
    messages: list[str] = []
    engine = Engine.open(copied, progress=messages.append)
    assert messages == []  # loaded as it was, not rebuilt
    assert "revoked the American visa" in engine.ask(DW_QUESTIONS[0]).text
    assert [d.path for d in engine.documents] == copied.documents


def _assert_rebuilt_and_answering(config) -> None:
    """Opening re-embeds every passage because the format changed, and the index answers."""
    messages: list[str] = []
    engine = Engine.open(config, progress=messages.append)
    assert any("index format changed" in m for m in messages)
    assert any("(11 embedded, 0 reused)" in m for m in messages)
    assert "revoked the American visa" in engine.ask(DW_QUESTIONS[0]).text


def test_an_index_of_format_2_is_rebuilt(copied):
    """A format-2 index kept its files beside the manifest, which listed only paths and hashes."""
    manifest = json.loads((copied.index_dir / MANIFEST).read_text())
    shutil.rmtree(copied.index_dir / manifest.pop("files"))
    for name in OLD_FILES:
        (copied.index_dir / name).write_text("{}")
    manifest["format"] = 2
    manifest["documents"] = [{"source": e["source"], "sha256": e["sha256"]} for e in manifest["documents"]]
    (copied.index_dir / MANIFEST).write_text(json.dumps(manifest))
    _assert_rebuilt_and_answering(copied)
    assert read_manifest(copied.index_dir)["format"] == FORMAT_VERSION
    assert not any((copied.index_dir / name).exists() for name in OLD_FILES)  # old files cleared
    reopened: list[str] = []
    Engine.open(copied, progress=reopened.append)
    assert reopened == []


def test_an_index_of_format_4_is_rebuilt(copied):
    """A format-4 generation holds llama-index JSON stores and no BM25 or arrays: it is rebuilt
    (re-embedded) on open, without reading those files, and the previous folder is kept until then."""
    manifest = json.loads((copied.index_dir / MANIFEST).read_text())
    folder = copied.index_dir / manifest["files"]
    for name in INDEX_FILES[1:]:
        shutil.rmtree(folder / name) if (folder / name).is_dir() else (folder / name).unlink()
    (folder / "docstore.json").write_text("{}")
    (folder / "index_store.json").write_text("{}")
    manifest["format"] = 4
    (copied.index_dir / MANIFEST).write_text(json.dumps(manifest))
    _assert_rebuilt_and_answering(copied)
    current = read_manifest(copied.index_dir)
    assert current["format"] == FORMAT_VERSION
    assert all((copied.index_dir / current["files"] / name).exists() for name in INDEX_FILES)
    reopened: list[str] = []
    Engine.open(copied, progress=reopened.append)
    assert reopened == []


def test_an_update_tags_only_new_passages_and_keeps_the_others_tags(copied, embed_model, tmp_path, monkeypatch):
    import rag.store
    from rag.entities import annotate

    tagged: list[str] = []

    def counting(texts, done=lambda count: None):
        tagged.extend(texts)
        return annotate(texts, done)

    notes = tmp_path / "notes.txt"
    notes.write_text(
        "The committee met on Tuesday in Lyon. It adopted a budget of 5 million euros.\n", encoding="utf-8"
    )
    before = add_documents(copied, [], embed_model).stored
    monkeypatch.setattr(rag.store, "annotate", counting)
    result = add_documents(copied, [notes], embed_model)
    assert len(tagged) == passage_count(notes) == 2
    passages = result.stored.passages
    old = dict(zip(map(str, before.passages.ids), before.passages.all_spans(), strict=True))
    for node_id, spans in zip(map(str, passages.ids), passages.all_spans(), strict=True):
        if node_id in old:
            assert spans == old[node_id]
        else:
            assert spans == annotate([passages.text(passages.position(node_id))])[0]
