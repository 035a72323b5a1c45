import json
import os
import shutil
import sqlite3
import zlib

import pytest

from rag.engine import Engine
from rag.errors import DocumentError, IndexCorruptError
from rag.index_files import DOCUMENT_ARRAYS, read_documents, read_manifest, save_documents
from rag.ingest import fingerprint, read_document
from rag.store import ARRAYS, BM25, MANIFEST, PASSAGES_DB, VECTORS, index_file

QUESTIONS = ["who revoked Bensouda's visa?", "Which allies could be next?", "What is the capital of France?"]


@pytest.fixture
def copied(engine, tmp_path):
    """A private copy of the session's built index, plus a config pointing at it."""
    index_dir = tmp_path / "index"
    shutil.copytree(engine.config.index_dir, index_dir)
    return engine.config.model_copy(update={"index_dir": index_dir})


def test_persist_then_load_gives_identical_answers(engine, copied):
    messages = []
    loaded = Engine.open(copied, progress=messages.append)
    assert messages == []  # loaded, not rebuilt
    for question in QUESTIONS:
        before, after = engine.ask(question), loaded.ask(question)
        assert (after.text, after.abstained, after.citations) == (before.text, before.abstained, before.citations)


@pytest.mark.parametrize("folder", ["notes #2", "100% done", "what?"])
def test_an_index_folder_named_with_uri_characters_loads(engine, tmp_path, folder):
    """The passage store is opened read-only through an SQLite URI: "#", "%" and "?" in the path
    are escaped, not taken for a fragment, an escape or a query."""
    index_dir = tmp_path / folder / "index"
    shutil.copytree(engine.config.index_dir, index_dir)
    messages: list[str] = []
    loaded = Engine.open(engine.config.model_copy(update={"index_dir": index_dir}), progress=messages.append)
    assert messages == []  # loaded, not rebuilt
    assert loaded.ask(QUESTIONS[0]).citations == engine.ask(QUESTIONS[0]).citations
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder]  # no stray database beside it


def test_manifest_records_what_the_index_was_built_from(copied):
    manifest = json.loads((copied.index_dir / MANIFEST).read_text())
    assert manifest["node_count"] == 11
    assert manifest["model"].startswith("all-MiniLM-L6-v2")
    assert manifest["chunking"] == {"unit": "sentence", "drop_boilerplate": True}
    assert len(manifest["documents"][0]["sha256"]) == 64
    assert {"faiss-cpu", "llama-index-core"} <= set(manifest["libraries"])
    assert not list(copied.index_dir.glob("*.pkl")) and not list(copied.index_dir.glob("*.pickle"))


def test_editing_the_document_triggers_a_rebuild(copied, tmp_path):
    document = tmp_path / "article.txt"
    shutil.copy(copied.documents[0], document)
    config = copied.model_copy(update={"documents": [document]})
    Engine.open(config)  # index for this path/content
    with document.open("a", encoding="utf-8") as handle:
        handle.write("\n\nThe court's new building opened in 2015 near the dunes.\n")
    messages = []
    engine = Engine.open(config, progress=messages.append)
    assert any("document or settings changed" in m for m in messages)
    assert "2015" in engine.ask("When did the court's new building open?").text


def test_changing_chunking_settings_triggers_a_rebuild(copied):
    config = copied.model_copy(update={"chunking": copied.chunking.model_copy(update={"unit": "paragraph"})})
    messages = []
    engine = Engine.open(config, progress=messages.append)
    assert messages and len(engine.stored.nodes) == 9


BM25_FILES = [f"{BM25}/{name}" for name in ("data.csc.index.npy", "indptr.csc.index.npy", "vocab.index.json")]
BM25_FILES += [f"{BM25}/params.index.json"]


def named(index_dir, name):
    """An index file by name: the manifest, or a file (or a file in a folder) of the current generation."""
    if name == MANIFEST:
        return index_dir / MANIFEST
    folder, _, inner = name.partition("/")
    return index_file(index_dir, folder) / inner if inner else index_file(index_dir, folder)


@pytest.mark.parametrize("name", [VECTORS, PASSAGES_DB, ARRAYS, *BM25_FILES, MANIFEST])
def test_truncated_index_file_gives_a_clear_error(copied, name):
    path = named(copied.index_dir, name)
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])
    with pytest.raises(IndexCorruptError) as error:
        Engine.open(copied)
    assert str(path) in str(error.value) or str(path.parent) in str(error.value)  # a BM25 file: its folder
    assert "python -m rag index --rebuild" in str(error.value)


@pytest.mark.parametrize("name", [VECTORS, PASSAGES_DB, ARRAYS, BM25, *BM25_FILES])
def test_missing_index_file_gives_a_clear_error(copied, name):
    path = named(copied.index_dir, name)
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    with pytest.raises(IndexCorruptError) as error:
        Engine.open(copied)
    assert str(path) in str(error.value) or str(path.parent) in str(error.value)
    assert "python -m rag index --rebuild" in str(error.value)


def test_rebuild_repairs_a_corrupt_index(copied):
    index_file(copied.index_dir, VECTORS).write_bytes(b"garbage")
    engine = Engine.open(copied, rebuild=True)
    assert not engine.ask(QUESTIONS[0]).abstained
    Engine.open(copied)  # and it loads cleanly afterwards


def test_large_sets_get_an_hnsw_index_that_answers_the_same(copied):
    config = copied.model_copy(update={"retrieval": copied.retrieval.model_copy(update={"hnsw_above": 5})})
    engine = Engine.open(config)
    assert engine.stored.manifest["faiss_index"] == "hnsw"
    assert type(engine.stored.faiss).__name__ == "IndexHNSWSQ"  # float16 vectors
    assert "revoked the American visa" in engine.ask(QUESTIONS[0]).text
    assert json.loads((copied.index_dir / MANIFEST).read_text())["faiss_index"] == "hnsw"


def test_the_index_does_not_depend_on_the_working_folder(article, tmp_path, monkeypatch):
    import json
    import subprocess
    import sys

    monkeypatch.delenv("RAG_INDEX_DIR")  # the index folder comes from the config file here
    config = tmp_path / "rag.yaml"
    config.write_text(f"documents: [{article}]\nindex_dir: {tmp_path / 'index'}\n", encoding="utf-8")
    somewhere = tmp_path / "elsewhere"
    somewhere.mkdir()
    runs = [
        subprocess.run(
            [sys.executable, "-m", "rag", "index", "--config", str(config)],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=300,
        )
        for cwd in (article.parent, somewhere, article.parent)
    ]
    assert all(r.returncode == 0 for r in runs), runs[-1].stderr
    assert "Building the index" in runs[0].stderr
    assert "Building the index" not in runs[1].stderr + runs[2].stderr  # one index, shared
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["documents"][0]["source"] == str(article.resolve())
    asked = subprocess.run(
        [sys.executable, "-m", "rag", "ask", "--json", "--config", str(config), "who revoked Bensouda's visa?"],
        cwd=article.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert json.loads(asked.stdout)["citations"][0]["source"] == article.name  # relative when shown


def test_two_processes_building_one_index_at_once_build_it_once(article, tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    index_dir = tmp_path / "shared"
    command = [
        sys.executable,
        "-m",
        "rag",
        "ask",
        "--json",
        "--doc",
        str(article),
        "--index-dir",
        str(index_dir),
        "who revoked Bensouda's visa?",
    ]
    processes = [
        subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    results = [p.communicate(timeout=600) for p in processes]
    assert all(p.returncode == 0 for p in processes), results
    assert sum("Building the index" in err for _, err in results) == 1  # the other waited and loaded it
    assert all("revoked the American visa" in out for out, _ in results)
    assert not list(index_dir.glob(".build-*"))  # no half-built leftovers


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        (VECTORS, b"null", "holds no index"),  # faiss reads its "null" marker as no index at all
        (PASSAGES_DB, b"SQLite format 3\x00" + b"\x00" * 4080, "cannot be read"),
        (ARRAYS, b"[]", "cannot be read"),
        (DOCUMENT_ARRAYS, b"PK\x03\x04 truncated", "cannot be read"),
        (f"{BM25}/vocab.index.json", b"[1, 2", "cannot be read"),
    ],
)
def test_index_files_holding_something_else_are_reported_as_corrupt(copied, name, content, problem):
    path = named(copied.index_dir, name)
    path.write_bytes(content)
    with pytest.raises(IndexCorruptError, match=problem) as error:
        Engine.open(copied)
    assert str(path) in str(error.value) or str(path.parent) in str(error.value)


def passage_records(path):
    """(key, value) of every passage record in the index's SQLite file."""
    with sqlite3.connect(path) as db:
        return db.execute("SELECT key, value FROM kv WHERE collection = 'docstore/data'").fetchall()


def rewrite_record(path, key, value: bytes):
    with sqlite3.connect(path) as db:
        db.execute("UPDATE kv SET value = ? WHERE collection = 'docstore/data' AND key = ?", (value, key))


def test_a_passage_record_that_cannot_be_decoded_is_reported_as_corrupt_when_read(copied):
    """Passages are read when retrieved, so a damaged record is found then, naming the file."""
    path = index_file(copied.index_dir, PASSAGES_DB)
    for key, _ in passage_records(path):
        rewrite_record(path, key, b"not zlib")
    engine = Engine.open(copied)
    with pytest.raises(IndexCorruptError, match="holds a record that cannot be read") as error:
        engine.ask(QUESTIONS[0])
    assert str(path) in str(error.value) and "python -m rag index --rebuild" in str(error.value)


def test_a_passage_record_that_is_not_a_node_is_reported_as_corrupt(copied):
    path = index_file(copied.index_dir, PASSAGES_DB)
    zdict = sqlite3.connect(path).execute("SELECT zdict FROM codec").fetchone()[0]
    for key, _ in passage_records(path):
        compressor = zlib.compressobj(zdict=zdict)
        rewrite_record(path, key, compressor.compress(b'{"__data__": {"text": "x"}}') + compressor.flush())
    engine = Engine.open(copied)
    with pytest.raises(IndexCorruptError, match="cannot give passage") as error:
        engine.ask(QUESTIONS[0])
    assert str(path) in str(error.value)


def test_passage_records_are_compact_and_the_docstore_is_llama_index_s(engine):
    """The docstore is llama-index's KVDocumentStore on our SQLite KV store, and its records
    are compressed against the preset dictionary to well under the 850-byte JSON."""
    from llama_index.core.storage.docstore.keyval_docstore import KVDocumentStore

    from rag.kvstore import SqliteKVStore

    docstore = engine.stored.index.docstore
    assert isinstance(docstore, KVDocumentStore) and not type(docstore).__name__.startswith("Simple")
    records = passage_records(index_file(engine.config.index_dir, PASSAGES_DB))
    assert len(records) == 11
    assert sum(len(value) for _, value in records) / len(records) < 0.5 * 850
    node = docstore.get_node(records[0][0])
    assert node.text == engine.stored.passages.text(engine.stored.passages.position(node.node_id))
    assert isinstance(engine.stored.index.storage_context.docstore, KVDocumentStore)
    from llama_index.core.storage.kvstore.types import BaseKVStore

    assert isinstance(docstore._kvstore, SqliteKVStore) and isinstance(docstore._kvstore, BaseKVStore)


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("faiss.read_index", AttributeError),  # e.g. faiss renamed or changed its reader
        ("llama_index.core.storage.index_store.keyval_index_store.KVIndexStore.index_structs", TypeError),
    ],
)
def test_a_bug_or_library_change_while_loading_is_not_reported_as_a_corrupt_index(copied, monkeypatch, target, error):
    """Only a file that cannot be read back means "rebuild"; anything else keeps its traceback."""

    def broken(*args, **kwargs):
        raise error("simulated incompatible library")

    monkeypatch.setattr(target, broken)
    with pytest.raises(error, match="simulated incompatible library"):
        assert Engine.open(copied).stored.index  # the llama-index index is loaded when first used


def test_an_up_to_date_index_opens_with_the_documents_it_stored(copied):
    """Opening reads the documents' texts from the index, not the files: the document comes
    without a file fingerprint (it was not read), yet equals what reading the file gives."""
    engine = Engine.open(copied)
    stored, read = engine.documents[0], read_document(copied.documents[0])
    assert stored.raw is None and read.raw is not None
    assert (stored.source, stored.text, stored.sha256, tuple(stored.paragraphs)) == (
        read.source,
        read.text,
        read.sha256,
        read.paragraphs,
    )
    entry = read_manifest(copied.index_dir)["documents"][0]
    assert entry["file"] == fingerprint(copied.documents[0])


def test_an_edit_keeping_size_and_modification_time_is_still_detected(copied, tmp_path):
    document = tmp_path / "article.txt"
    shutil.copy(copied.documents[0], document)
    config = copied.model_copy(update={"documents": [document]})
    Engine.open(config)
    status = document.stat()
    text = document.read_text(encoding="utf-8")
    document.write_text(text.replace("Bensouda", "Bensoudx", 1), encoding="utf-8")
    os.utime(document, ns=(status.st_atime_ns, status.st_mtime_ns))
    messages: list[str] = []
    engine = Engine.open(config, progress=messages.append)
    assert any("document or settings changed" in m for m in messages)
    assert "Bensoudx" in engine.documents[0].text


def test_a_file_whose_bytes_changed_but_not_its_text_is_recorded_once(copied, tmp_path, monkeypatch):
    """A re-saved file with the same text keeps the index; its new fingerprint is recorded, so
    the next start does not extract it again."""
    document = tmp_path / "article.txt"
    shutil.copy(copied.documents[0], document)
    config = copied.model_copy(update={"documents": [document]})
    before = Engine.open(config).documents[0].sha256
    document.write_bytes(b"\xef\xbb\xbf" + document.read_bytes())  # saved with a UTF-8 byte-order mark
    assert read_document(document).sha256 == before  # other bytes, same text
    messages: list[str] = []
    Engine.open(config, progress=messages.append)
    assert messages == []  # loaded, not rebuilt
    assert read_manifest(config.index_dir)["documents"][0]["file"] == fingerprint(document)

    def extracting(*args, **kwargs):
        raise AssertionError("the document was extracted again")

    monkeypatch.setattr("rag.store.load_documents", extracting)
    assert Engine.open(config).documents[0].sha256 == before


def test_a_missing_configured_document_gives_its_clear_error(copied, tmp_path):
    document = tmp_path / "article.txt"
    shutil.copy(copied.documents[0], document)
    config = copied.model_copy(update={"documents": [document]})
    Engine.open(config)
    document.unlink()
    with pytest.raises(DocumentError, match=f"document not found: {document}"):
        Engine.open(config)


@pytest.mark.parametrize("old_format", [5, 6])
def test_an_index_of_an_older_format_is_upgraded_without_re_embedding(copied, old_format):
    """Formats 5 and 6 had no document arrays (6 kept the texts in SQLite, 5 no texts and no file
    fingerprints); their passages and vectors are reused."""
    manifest = json.loads((copied.index_dir / MANIFEST).read_text())
    manifest["format"] = old_format
    if old_format == 5:
        for entry in manifest["documents"]:
            entry.pop("file")
    (copied.index_dir / MANIFEST).write_text(json.dumps(manifest))
    (copied.index_dir / manifest["files"] / DOCUMENT_ARRAYS).unlink()
    messages: list[str] = []
    engine = Engine.open(copied, progress=messages.append)
    assert any("index format changed" in m for m in messages)
    assert any("(0 embedded, 11 reused)" in m for m in messages)
    assert "revoked the American visa" in engine.ask(QUESTIONS[0]).text
    reopened: list[str] = []
    Engine.open(copied, progress=reopened.append)
    assert reopened == []


def test_a_missing_document_arrays_file_is_reported_as_corrupt(copied):
    path = index_file(copied.index_dir, DOCUMENT_ARRAYS)
    path.unlink()
    with pytest.raises(IndexCorruptError, match="is missing") as error:
        Engine.open(copied)
    assert str(path) in str(error.value) and "python -m rag index --rebuild" in str(error.value)


def test_documents_read_back_from_their_arrays_equal_the_parsed_ones(engine, tmp_path):
    """Texts, hashes, page counts and every paragraph survive the round trip, for two documents
    and for none; other documents than the manifest's are corruption."""
    from pathlib import Path

    from rag.ingest import Paragraph, SourceDocument

    parsed = engine.documents[0]
    pdf_like = SourceDocument(Path("/docs/b.pdf"), "Ünïcode: 5 €.\n\nSecond.", "ab" * 32,
                              (Paragraph(1, 0, 13, "heading", 1), Paragraph(2, 15, 22, "text", 2)), 2)  # fmt: skip
    path = tmp_path / DOCUMENT_ARRAYS
    save_documents(path, [parsed, pdf_like])
    read = read_documents(path, [(d.source, d.sha256) for d in (parsed, pdf_like)], tmp_path)
    for before, after in zip([parsed, pdf_like], read, strict=True):
        assert (after.path, after.text, after.sha256, after.pages) == (
            before.path,
            before.text,
            before.sha256,
            before.pages,
        )
        assert list(after.paragraphs) == list(before.paragraphs) and after.title == before.title
    assert list(read[0].paragraphs[2:4]) == list(parsed.paragraphs[2:4])
    with pytest.raises(IndexCorruptError, match="holds other documents than the manifest names"):
        read_documents(path, [(pdf_like.source, pdf_like.sha256)], tmp_path)
    with pytest.raises(IndexCorruptError, match="holds other documents than the manifest names"):
        read_documents(path, [(parsed.source, "0" * 64), (pdf_like.source, pdf_like.sha256)], tmp_path)
    save_documents(path, [])
    assert read_documents(path, [], tmp_path) == []


def test_candidates_are_read_in_one_batch_as_llama_index_reads_them_one_by_one(copied):
    """The batch read decodes records as llama-index's docstore does (`get_node`)."""
    engine = Engine.open(copied)
    passages = engine.stored.passages
    ids = [str(i) for i in passages.ids[::-1]]
    batch = passages.nodes_by_id(ids)
    one_by_one = [engine.stored.storage.docstore.get_node(node_id) for node_id in ids]
    assert [n.model_dump() for n in batch] == [n.model_dump() for n in one_by_one]
    with pytest.raises(KeyError):
        passages.nodes_by_id(["no such passage"])


def test_no_index_yet_is_its_own_error_not_a_document_error(tmp_path):
    from rag.errors import IndexMissingError
    from rag.store import read_current_manifest

    with pytest.raises(IndexMissingError, match="no index in .* yet; run `python -m rag index") as error:
        read_current_manifest(tmp_path)
    assert not isinstance(error.value, DocumentError)
