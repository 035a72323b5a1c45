from pathlib import Path

import pytest

from rag.errors import DocumentError
from rag.ingest import classify, read_document
from tests.conftest import DW_ARTICLE


def kinds(document):
    return {document.text[p.start : p.end].split("\n")[0][:25]: p.kind for p in document.paragraphs}


def test_dw_article_boilerplate_is_dropped_and_content_kept():
    document = read_document(DW_ARTICLE)
    labels = kinds(document)
    assert labels["Read more: Why is the US "] == "boilerplate"
    assert labels["Watch video 06:33 Share P"] == "boilerplate"
    assert labels["DW sends out a daily sele"] == "boilerplate"
    assert labels["Feuding investigations"] == "heading"
    assert labels["dv/dr (AFP, Reuters)"] == "attribution"
    assert sum(1 for p in document.paragraphs if p.kind == "text") == 8
    assert [p.number for p in document.paragraphs] == list(range(1, 14))


def test_paragraph_offsets_are_slices_of_the_file():
    document = read_document(DW_ARTICLE)
    raw = DW_ARTICLE.read_text(encoding="utf-8")
    for paragraph in document.paragraphs:
        block = raw[paragraph.start : paragraph.end]
        assert block == block.strip() and block
    assert raw[document.paragraphs[8].start :].startswith("Last year, the administration revoked")


def test_classify_generic_patterns():
    assert classify("Subscribe to our newsletter. Sign up here.") == "boilerplate"
    assert classify("jsi/rt (AP, dpa)") == "attribution"
    assert classify("# Results\n") == "heading"
    assert classify("Results\n=======") == "heading"
    assert classify("The results were read out on Monday.") == "text"
    assert classify("Read more: a long essay about it.", drop_boilerplate=False) == "text"


@pytest.mark.parametrize(
    "content",
    [
        "Customers can reach support by email, Telegram, WhatsApp or Facebook Messenger.",
        "See also: the 2019 amendment",
        "Users who subscribe pay monthly",
    ],
)
def test_content_that_merely_resembles_web_furniture_is_kept(content):
    assert classify(content) == "text"


def test_a_short_sentence_without_a_full_stop_is_not_a_heading():
    assert classify("Revenue grew 5% in 2023") == "text"
    assert classify("Feuding investigations") == "heading"
    assert classify("Results For The Second Quarter") == "heading"


def test_a_share_bar_is_still_dropped():
    bar = "Share Send Facebook Twitter Whatsapp Tumblr linkedin reddit Permalink https://example.org/p/1"
    assert classify(bar) == "boilerplate"


def test_markdown_and_wrapped_text(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("# Notes\n\nFirst line\ncontinues here.\n\nSecond paragraph.\n", encoding="utf-8")
    document = read_document(path)
    assert document.title == "Notes"
    assert read_document(DW_ARTICLE).title == "dw-icc-sanctions.txt"
    assert [p.kind for p in document.paragraphs] == ["heading", "text", "text"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.txt", None, "not found"),
        ("empty.txt", "  \n", "empty"),
        ("doc.pdf", "x", "not a PDF.*the file is plain text"),
        ("doc.pdf", b"\x7fELF\x02\x01\x01" + bytes(64), "not a PDF.*the file is a Linux program or library"),
        ("doc.pdf", b"\x01\x02\x00\x00" + bytes(64), "not a PDF.*binary data of a kind not recognised"),
        ("doc.odt", "x", "unsupported document type '.odt'"),
        ("bin.txt", b"\x00\x01\x02\x03\xff\xfe\x00", "not UTF-8 text.*iconv -f ENCODING -t UTF-8"),
        ("nul.txt", b"text\x00\x00\x00\x00\x00 more", "binary data, not text"),
        ("photo.md", b"\x89PNG\r\n\x1a\n" + bytes(64), "extension says .md, but the file is a PNG image"),
    ],
)
def test_unusable_documents_raise_clear_errors(tmp_path: Path, name, content, message):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DocumentError, match=message):
        read_document(path)


def test_windows_line_ends_give_the_same_paragraphs(article, tmp_path):
    """Blank lines of "\r\n" separate paragraphs as "\n" ones do (a CRLF file read as one block
    used to be refused as having no text)."""
    unix = read_document(article)
    windows = tmp_path / "windows.txt"
    windows.write_bytes(article.read_bytes().replace(b"\n", b"\r\n"))
    document = read_document(windows)
    assert [p.kind for p in document.paragraphs] == [p.kind for p in unix.paragraphs]
    assert [document.text[p.start : p.end].replace("\r", "") for p in document.paragraphs] == [
        unix.text[p.start : p.end] for p in unix.paragraphs
    ]
