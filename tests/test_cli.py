"""The real command-line entry point, run as a subprocess (`python -m rag ...`)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rag.answer import normalise
from rag.store import VECTORS, index_file
from tests.conftest import ROOT


def rag(*args: str, stdin: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rag", *args], input=stdin, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


@pytest.fixture
def where(article, shared_index_dir):
    return ["--doc", str(article), "--index-dir", str(shared_index_dir)]


def test_ask_json_matches_the_fixed_interface(where, article):
    result = rag("ask", "--json", *where, "who revoked Bensouda's visa?")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert list(data)[:7] == ["id", "turn", "question", "answer", "abstained", "citations", "latency_ms"]  # DESIGN.md
    assert data["mode"] == "extractive"
    assert "revoked the American visa" in data["answer"] and data["abstained"] is False
    text = article.read_text(encoding="utf-8")
    for citation in data["citations"]:
        assert normalise(text[citation["start"] : citation["end"]]) == citation["text"]
    assert data["citations"][0]["paragraph"] == 9


def test_ask_prints_the_answer_then_the_citations(where):
    result = rag("ask", *where, "Who is the US Secretary of State?")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Mike Pompeo" in lines[0] and "[1]" in result.stdout
    assert "Sources:" in lines and "paragraph 3" in result.stdout


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ("", "Please ask a question"),
        ("   \n ", "Please ask a question"),
        ("x" * 10_000, "10,000 characters"),
        ("🙂🙂🙂", "in words"),
    ],
)
def test_unusable_questions_get_one_line_and_status_2(where, question, message):
    result = rag("ask", *where, question)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_german_question_gets_a_plain_reply(where):
    result = rag("ask", *where, "Wer hat Bensoudas Visum widerrufen?")
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert result.stdout.startswith("Please ask in the language of the document")


def test_setup_errors_are_one_line(tmp_path):
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("retrieval:\n  top_k: -1\n")
    for args in (
        ["ask", "--config", str(bad_config), "hi there"],
        ["ask", "--doc", str(tmp_path / "none.txt"), "hi there"],
    ):
        result = rag(*args)
        assert result.returncode == 1
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_corrupt_index_is_reported_with_the_remedy(article, tmp_path):
    index_dir = tmp_path / "idx"
    assert rag("index", "--doc", str(article), "--index-dir", str(index_dir)).returncode == 0
    index_file(index_dir, VECTORS).write_bytes(b"\x00" * 10)
    result = rag("ask", "--doc", str(article), "--index-dir", str(index_dir), "who revoked the visa?")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (
        "vectors.faiss" in result.stderr and f"python -m rag index --rebuild --index-dir {index_dir}" in result.stderr
    )
    repaired = rag("index", "--rebuild", "--doc", str(article), "--index-dir", str(index_dir))
    assert repaired.returncode == 0 and "up to date" in repaired.stdout


def test_chat_repl_end_to_end(where):
    script = (
        "\n".join(
            [
                "/help",
                "Who is the ICC's chief prosecutor?",
                "Where was she born?",
                "/sources",
                "/reset",
                "/sources",
                "/nonsense",
                "/docs",
                "bye",
                "Who revoked Bensouda's visa?",
            ]
        )
        + "\n"
    )  # then end of input, as Ctrl-D
    result = rag("chat", *where, stdin=script)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "/sources" in out and "/reset" in out  # help
    assert out.count("Gambian-born Fatou Bensouda") >= 3  # answer, follow-up, full sources
    assert "paragraph 9, chars" in out
    assert "Conversation cleared." in out
    assert "No sources yet" in out  # /sources after /reset
    assert "Unknown command /nonsense. The commands are:\n  /sources" in out  # the list, not nothing
    assert "dw-icc-sanctions.txt" in out and "passages" in out  # /docs
    assert "Goodbye!" in out and "revoked the American visa" not in out.split("Goodbye!")[1]  # "bye" ends it
    assert "Traceback" not in result.stderr


def test_eval_writes_predictions_and_report(where, tmp_path):
    dataset = tmp_path / "set.jsonl"
    dataset.write_text(
        "\n".join(
            json.dumps(item)
            for item in (
                {
                    "id": "a",
                    "question": "who revoked Bensouda's visa?",
                    "answers": ["revoked the American visa"],
                    "evidence": "revoked the American visa",
                },
                {"id": "u", "question": "What is the capital of France?", "unanswerable": True},
                {
                    "id": "c",
                    "turns": [
                        {"question": "Who is the US Secretary of State?", "answers": ["Pompeo"]},
                        {"question": "What did he call the court?", "answers": ["kangaroo court"]},
                    ],
                },
            )
        )
        + "\n"
    )
    predictions, report = tmp_path / "pred.jsonl", tmp_path / "report.json"
    result = rag("eval", "--dataset", str(dataset), *where, "--predictions", str(predictions), "--report", str(report))
    assert result.returncode == 0, result.stderr
    assert "answer_accuracy        100.0%" in result.stdout
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert [(r["id"], r["turn"]) for r in rows] == [("a", 0), ("u", 0), ("c", 0), ("c", 1)]
    metrics = json.loads(report.read_text())["metrics"]
    assert metrics["abstention_recall"] == 1.0 and metrics["follow_up_accuracy"] == 1.0


def test_ask_into_a_closed_pipe_exits_quietly(where):
    # `true` exits at once without reading, so every write of the answer meets a closed pipe
    command = f"{sys.executable} -m rag ask {' '.join(where)} 'Who is the US Secretary of State?' | true"
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.stderr == "" and result.returncode == 0


def test_several_docs_are_all_used(article, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text(
        "The garden committee meets on the first Tuesday of every month in the library.\n", encoding="utf-8"
    )
    where = ["--doc", str(article), "--doc", str(notes), "--index-dir", str(tmp_path / "idx")]
    garden = json.loads(rag("ask", "--json", *where, "When does the garden committee meet?").stdout)
    visa = json.loads(rag("ask", "--json", *where, "who revoked Bensouda's visa?").stdout)
    assert "first Tuesday" in garden["answer"] and garden["citations"][0]["source"].endswith("notes.txt")
    assert "revoked the American visa" in visa["answer"] and visa["citations"][0]["source"].endswith(
        "dw-icc-sanctions.txt"
    )


def test_train_writes_outside_the_installed_package_by_default():
    import rag
    from rag.cli import build_parser

    out = build_parser().parse_args(["train", "--squad", "articles.json"]).out.resolve()
    assert out == Path.cwd() / "ranker.json"
    assert Path(rag.__file__).parent not in out.parents  # `rag train` never overwrites the shipped model


def test_a_trained_model_names_the_code_revision_that_made_it():
    from rag.cli import code_revision

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert code_revision().removesuffix("+changes") == head and len(head) == 40
