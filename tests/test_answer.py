import re

import pytest

from rag.answer import normalise


def test_visa_question_quotes_the_visa_sentence(engine):
    answer = engine.ask("who revoked Bensouda's visa?")
    assert not answer.abstained
    assert answer.text.startswith("Last year, the administration revoked the American visa")
    first = answer.citations[0]
    assert first.n == 1 and first.paragraph == 9
    assert first.text == answer.text


def test_citations_are_document_slices(engine):
    text = engine.documents[0].text
    for question in [
        "Who is the US Secretary of State?",
        "Which news agencies is the report based on?",
        "How many judges does the ICC have?",
    ]:
        citations = engine.ask(question).citations
        assert citations, question  # the loop below checks something
        for citation in citations:
            assert normalise(text[citation.start : citation.end]) == citation.text
            assert citation.source.endswith("dw-icc-sanctions.txt")


def test_answer_uses_only_document_words(engine):
    answer = engine.ask("What did Pompeo call the court?")
    document_words = set(re.findall(r"\w+", engine.documents[0].text))
    assert set(re.findall(r"\w+", answer.text)) <= document_words


def test_pronoun_opening_brings_its_antecedent(engine):
    answer = engine.ask("Who hinted that NATO members might be next?")
    assert "Mike Pompeo" in answer.text and "could be next" in answer.text
    assert "Mike Pompeo" in answer.citations[0].text and "He also implied" in answer.citations[1].text


@pytest.mark.parametrize(
    "question",
    ["What is the capital of France?", "Who won the 1998 football World Cup?", "What is the boiling point of mercury?"],
)
def test_abstains_when_the_document_does_not_say(engine, question):
    answer = engine.ask(question)
    assert answer.abstained
    assert answer.text == "I couldn't find this in dw-icc-sanctions.txt."
    assert answer.confidence < engine.threshold


def test_answer_json_has_the_fixed_shape(engine):
    data = engine.ask("who revoked Bensouda's visa?").to_json("q7", 1)
    assert list(data)[:7] == ["id", "turn", "question", "answer", "abstained", "citations", "latency_ms"]
    assert (data["mode"], data["dropped_sentences"]) == ("extractive", 0)
    assert 0 < data["confidence"] <= 1
    assert (data["id"], data["turn"]) == ("q7", 1)
    citation = data["citations"][0]
    assert list(citation) == ["n", "text", "start", "end", "paragraph", "score", "source", "page", "section"]
    assert citation["page"] is None  # a text file has no pages


def test_every_quoted_sentence_carries_its_own_citation_number(engine):
    from rag.render import body

    answer = engine.ask("Who hinted that NATO members might be next?")
    assert len(answer.parts) == 2
    numbers = [n for _, n in answer.parts]
    assert numbers == [1, 2]  # numbered in the order they are read, the antecedent first
    cited = {c.n: c.text for c in answer.citations}
    assert answer.parts and all(cited[n] == text for text, n in answer.parts)
    assert body(answer) == " ".join(f"{text} [{n}]" for text, n in answer.parts)
