import json

import numpy as np
import pytest

from rag.errors import ModelError
from rag.rank import (
    CANDIDATE_FEATURES,
    EMBEDDER_MODEL_FILES,
    MODEL_FILE,
    QUESTION_FEATURES,
    Featurizer,
    RankerModel,
    answer_tokens,
    expected_kind,
    load_model,
    new_kinds,
)


def test_shipped_model_loads_offline_and_records_its_training():
    model = load_model()
    assert MODEL_FILE.stat().st_size < 200 * 1024  # about 10,000 numbers (the short answer's hidden layer the most)
    assert 0 < model.threshold < 1
    fit, held_out = set(model.training["fit_articles"]), set(model.training["held_out_articles"])
    assert fit and held_out and not fit & held_out
    assert model.training["seed"] and model.training["max_false_abstention"] <= 0.1


@pytest.mark.parametrize("path", sorted({MODEL_FILE, *EMBEDDER_MODEL_FILES.values()}), ids=lambda p: p.name)
def test_every_shipped_model_names_exactly_the_features_the_code_computes(path):
    from rag.short_answer import SPAN_FEATURES

    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["candidate_features"] == list(CANDIDATE_FEATURES)
    assert data["question_features"] == list(QUESTION_FEATURES)
    assert data["short_answer"]["features"] == list(SPAN_FEATURES)
    model = load_model(path)  # and it loads, offline
    assert 0 < model.threshold < 1 and model.short_answer is not None


def test_model_round_trip_gives_identical_scores(tmp_path, engine):
    model = load_model()
    path = tmp_path / "ranker.json"
    model.save(path)
    again = load_model(path)
    x = np.random.default_rng(0).normal(size=(5, len(CANDIDATE_FEATURES)))
    assert np.array_equal(model.ranker(x), again.ranker(x))
    q = np.random.default_rng(1).normal(size=(5, len(QUESTION_FEATURES)))
    assert np.array_equal(model.confidence(q), again.confidence(q))
    assert again.threshold == model.threshold


@pytest.mark.parametrize("content", ["{not json", json.dumps({"format": 1}), ""])
def test_a_corrupt_model_file_is_named_with_the_remedy(tmp_path, content):
    path = tmp_path / "ranker.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ModelError, match="ranker.json.*rag train"):
        load_model(path)
    with pytest.raises(ModelError, match="cannot read"):
        load_model(tmp_path / "missing.json")


def test_a_model_trained_for_other_features_is_refused(tmp_path):
    data = load_model().to_json()
    data["candidate_features"] = data["candidate_features"][:-1]
    path = tmp_path / "ranker.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelError, match="other features"):
        load_model(path)


def test_answer_kinds():
    assert expected_kind("How many soldiers were pardoned?") == "number"
    assert expected_kind("In which year did it open?") == "time"
    assert expected_kind("Where is the court based?") == "name"
    assert expected_kind("What did he say?") is None
    tokens = answer_tokens("In March, Trump pardoned two soldiers.")
    assert new_kinds(tokens, {"trump", "soldiers"}) == {"time", "number", "name"}
    assert new_kinds(tokens, {"march", "trump", "two"}) == set()


def test_ranker_puts_the_answer_first_on_a_reference_question(engine):
    candidates = engine.retriever.retrieve(["who revoked Bensouda's visa?"])
    features = Featurizer(engine.stored.nodes)
    x = features.candidates("who revoked Bensouda's visa?", candidates)
    assert x.shape == (len(candidates), len(CANDIDATE_FEATURES)) and np.isfinite(x).all()
    best = candidates[int(np.argmax(load_model().ranker(x)))]
    assert "revoked the American visa" in best.node.text


def test_confidence_separates_an_answerable_from_an_unrelated_question(engine):
    assert engine.ask("Who is the US Secretary of State?").confidence > engine.threshold
    assert engine.ask("What is the boiling point of mercury?").confidence < engine.threshold


def test_min_confidence_overrides_the_model_threshold(config):
    from rag.engine import Engine

    strict = Engine.open(config.model_copy(update={"answer": config.answer.model_copy(update={"min_confidence": 1.0})}))
    assert strict.threshold == 1.0 and strict.ask("who revoked Bensouda's visa?").abstained
    assert isinstance(load_model(), RankerModel)


def test_question_features_read_the_candidate_columns_they_name(engine):
    from rag.rank import COLUMN, QUESTION_FEATURES

    question = "How many US soldiers did Trump pardon?"
    candidates = engine.retriever.retrieve([question])
    features = Featurizer(engine.stored.nodes)
    x = features.candidates(question, candidates)
    scores = load_model().ranker(x)
    allowed = features.offers_kind(question, candidates)
    row = features.question(question, candidates, x, scores, allowed)
    best = int(np.argmax(np.where(allowed, scores, -np.inf)))
    assert row[QUESTION_FEATURES.index("kind_fits")] == x[best, COLUMN["number_new"]] == 1.0
    assert row[QUESTION_FEATURES.index("top_coverage")] == x[best, COLUMN["coverage"]]


def test_a_changed_detail_is_seen_in_the_question_features(engine):
    """A question that uses words the document has, but not near the answer, reads differently
    from the real one."""
    features = Featurizer(engine.stored.nodes)

    def question_features(question: str) -> dict[str, float]:
        candidates = engine.retriever.retrieve([question])
        x = features.candidates(question, candidates)
        scores = engine.answerer.model.ranker(x)
        row = features.question(question, candidates, x, scores, features.offers_kind(question, candidates))
        return dict(zip(QUESTION_FEATURES, row, strict=True))

    real = question_features("Who revoked the visa of Fatou Bensouda?")
    assert real["known_missing_paragraph"] == 0
    assert question_features("Who revoked the visa of the kangaroo prosecutor Bensouda?")["known_missing_window"] > 0


def test_a_name_with_one_word_swapped_is_seen_in_the_question_features(engine):
    """Both words of "Fatou Pompeo" are in the article, never side by side; "Fatou Bensouda" is."""
    features = Featurizer(engine.stored.nodes)

    def unseen_pairs(question: str) -> float:
        candidates = engine.retriever.retrieve([question])
        x = features.candidates(question, candidates)
        scores = engine.answerer.model.ranker(x)
        row = features.question(question, candidates, x, scores, features.offers_kind(question, candidates))
        return float(row[QUESTION_FEATURES.index("name_pairs_unseen")])

    assert unseen_pairs("Where was Fatou Bensouda born?") == 0.0
    assert unseen_pairs("Where was Fatou Pompeo born?") == 1.0
    assert unseen_pairs("Where was she born?") == 0.0  # no multi-word name: nothing to check


def test_an_answer_quotes_the_adjacent_sentence_the_ranker_rates_close():
    """`Featurizer.quoted`: the best passage, its pronoun's antecedent, and the adjacent passage
    of the same paragraph (before or after) whose probability is at least the ratio of the
    best's; never a passage further away or in another paragraph, however close its probability."""
    from llama_index.core.schema import TextNode

    paragraphs = [
        ["Ann Lee founded the firm.", "It grew fast.", "Profits rose.", "Costs fell."],
        ["They left.", "Staff stayed."],
    ]
    nodes, start = [], 0
    for number, texts in enumerate(paragraphs):
        for text in texts:
            metadata = {"source": "d.txt", "paragraph": number, "start": start, "end": start + len(text)}
            nodes.append(TextNode(id_=f"p{len(nodes)}", text=text, metadata=metadata))
            start += len(text) + 1
    texts = [n.text for n in nodes]
    features = Featurizer(nodes)

    def quoted(best: int, others: list[tuple[int, float]], ratio: float = 0.25) -> list[str]:
        return features.quoted(f"p{best}", texts[best], [(f"p{i}", p) for i, p in others], 0.6, ratio)

    assert quoted(2, []) == ["p2"]
    assert quoted(2, [(3, 0.2)]) == ["p2", "p3"]
    assert quoted(2, [(1, 0.2)]) == ["p1", "p2"]
    assert quoted(2, [(3, 0.1)]) == ["p2"]  # below a quarter of the best's 0.6
    assert quoted(2, [(0, 0.3), (5, 0.3)]) == ["p2"]  # not adjacent
    assert quoted(2, [(0, 0.3), (1, 0.2), (3, 0.16)]) == ["p1", "p2"]  # the higher-rated neighbour
    assert quoted(2, [(3, 0.5)], ratio=1.0) == ["p2"]
    assert quoted(3, [(4, 0.5)]) == ["p3"]  # "They left." opens the next paragraph
    assert quoted(1, []) == ["p0", "p1"]  # "It grew fast." names its subject one sentence earlier
    assert quoted(1, [(2, 0.3)]) == ["p0", "p1", "p2"]
    assert quoted(1, [(0, 0.5), (2, 0.3)]) == ["p0", "p1", "p2"]  # the antecedent is quoted already
    assert quoted(4, []) == ["p4"]  # a pronoun opening its paragraph has no antecedent to bring
