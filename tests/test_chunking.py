from rag.chunking import chunk, sentence_spans
from rag.ingest import read_document
from tests.conftest import DW_ARTICLE


def test_sentences_are_exact_slices_with_metadata():
    document = read_document(DW_ARTICLE)
    nodes = chunk(document, "data/dw-icc-sanctions.txt")
    assert len(nodes) == 11
    for node in nodes:
        meta = node.metadata
        assert document.text[meta["start"] : meta["end"]] == node.text
        assert meta["source"] == "data/dw-icc-sanctions.txt"
    visa = next(n for n in nodes if "revoked the American visa" in n.text)
    assert visa.metadata["paragraph"] == 9
    assert visa.metadata["section"] == "Feuding investigations"
    assert visa.text.endswith("end the Afghanistan investigations.")
    assert not any("Sign up" in n.text or "Read more" in n.text for n in nodes)


def test_node_ids_are_stable_and_depend_on_settings():
    document = read_document(DW_ARTICLE)
    first = [n.node_id for n in chunk(document, "a.txt")]
    assert first == [n.node_id for n in chunk(document, "a.txt")]
    assert len(set(first)) == len(first)
    paragraphs = chunk(document, "a.txt", unit="paragraph")
    assert len(paragraphs) == 9
    assert not set(first) & {n.node_id for n in paragraphs}


def test_passages_are_embedded_as_their_own_text_only():
    nodes = chunk(read_document(DW_ARTICLE), "a.txt")
    credit = next(n for n in nodes if n.metadata["kind"] == "attribution")
    assert credit.text == "dv/dr (AFP, Reuters)"
    assert all(n.get_content(metadata_mode="embed") == n.text for n in nodes)


def test_sentence_spans_keep_abbreviations_together():
    text = "The U.S. envoy met Dr. Smith on Monday. They talked."
    spans = sentence_spans(text)
    assert [text[a:b] for a, b in spans] == ["The U.S. envoy met Dr. Smith on Monday.", "They talked."]


def test_a_list_or_section_label_stays_with_its_sentence():
    from rag.chunking import sentence_spans

    text = "2. The works began in May. The roof came first. iv. Costs rose. It was 5 p.m. on day 2. The end."
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "2. The works began in May.", "The roof came first.", "iv. Costs rose.", "It was 5 p.m. on day 2.", "The end."
    ]  # fmt: skip
