import json
import subprocess
import sys

import pytest

from rag.errors import ConfigError
from rag.squad import load_squad, select
from tests.conftest import ROOT

TINY = {
    "version": "v2.0",
    "data": [
        {
            "title": "Lighthouses",
            "paragraphs": [
                {
                    "context": "The Pharos of Alexandria was built in the third century BC."
                    " It stood about 100 metres tall.",
                    "qas": [
                        {
                            "id": "a1",
                            "question": "How tall was the Pharos?",
                            "answers": [{"text": "about 100 metres", "answer_start": 69}],
                            "is_impossible": False,
                        },
                        {"id": "a2", "question": "Who demolished the Pharos?", "answers": [], "is_impossible": True},
                    ],
                },
                {
                    "context": "Modern lighthouses use LED lamps.\n\nMany are automated and need no keeper.",
                    "qas": [
                        {
                            "id": "a3",
                            "question": "What lamps do modern lighthouses use?",
                            "answers": [{"text": "LED lamps", "answer_start": 23}],
                            "is_impossible": False,
                        }
                    ],
                },
            ],
        },
        {
            "title": "Bread_baking",
            "paragraphs": [
                {
                    "context": "Sourdough is leavened by wild yeast and lactic acid bacteria."
                    " A loaf bakes for about forty minutes.",
                    "qas": [
                        {
                            "id": "b1",
                            "question": "What leavens sourdough?",
                            "answers": [{"text": "wild yeast", "answer_start": 25}],
                            "is_impossible": False,
                        }
                    ],
                }
            ],
        },
    ],
}


@pytest.fixture
def squad_file(tmp_path):
    path = tmp_path / "tiny-squad.json"
    path.write_text(json.dumps(TINY), encoding="utf-8")
    return path


def test_articles_become_documents_with_gold_offsets(squad_file, tmp_path):
    lighthouses, bread = load_squad(squad_file)
    assert lighthouses.text.startswith("Lighthouses\n\nThe Pharos") and bread.slug == "Bread_baking"
    assert [q.answerable for q in lighthouses.questions] == [True, False, True]
    for question in lighthouses.questions:
        for (start, end), answer in zip(lighthouses.spans[question.item_id], question.answers, strict=True):
            assert lighthouses.text[start:end] == answer
    assert "\n\nMany are automated" not in lighthouses.text  # a paragraph stays one block
    path = lighthouses.write(tmp_path / "docs")
    assert path.read_text(encoding="utf-8") == lighthouses.text


def test_articles_are_selected_by_count_title_or_held_out(squad_file):
    articles = load_squad(squad_file)
    assert [a.title for a in select(articles, "1")] == ["Lighthouses"]
    assert [a.title for a in select(articles, "Bread_baking")] == ["Bread_baking"]
    assert [a.title for a in select(articles, "held-out", held_out={"Bread_baking"})] == ["Bread_baking"]
    with pytest.raises(ConfigError, match="no article titled Nope"):
        select(articles, "Nope")


def test_a_file_that_is_not_squad_is_refused(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"data": [{"paragraphs": []}]}', encoding="utf-8")
    with pytest.raises(ConfigError, match="not a SQuAD-format file"):
        load_squad(path)


def test_eval_squad_reports_pooled_metrics_and_baselines(squad_file, tmp_path):
    html = tmp_path / "report.html"
    command = ["eval", "--squad", str(squad_file), "--index-dir", str(tmp_path / "idx"), "--report-html", str(html)]
    result = subprocess.run(
        [sys.executable, "-m", "rag", *command], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    table = result.stdout.split("\n\n")[0].splitlines()[2:]  # the metrics, before the failed items
    lines = dict(line.split(None, 1) for line in table)
    assert lines["questions"].strip() == "4" and lines["unanswerable"].strip() == "1"
    assert {"top1_ranker", "top1_bm25", "top1_dense", "answer_accuracy", "abstention_recall"} <= set(lines)
    assert html.read_text(encoding="utf-8").count("data:image/png;base64,") == 3
