"""SQuAD-format question sets (v1.1 and v2.0 JSON): each article becomes one document.

An article's paragraphs are written, title first, as a text file with blank lines between
paragraphs, so the engine reads it like any other document and builds it an index of its own.
Its questions become evaluation items (unanswerable ones where ``is_impossible``), and the gold
answers' offsets are kept in the written file's coordinates, for training the ranker.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.config import Config
from rag.errors import ConfigError
from rag.evaluate import Question


@dataclass(frozen=True)
class SquadArticle:
    title: str
    text: str  # the document as written: title, blank line, paragraphs separated by blank lines
    questions: tuple[Question, ...]
    spans: dict[str, tuple[tuple[int, int], ...]]  # question id -> gold answer (start, end) in `text`

    @property
    def slug(self) -> str:
        return re.sub(r"[^\w.-]+", "_", self.title, flags=re.UNICODE).strip("_")[:80] or "article"

    def write(self, folder: Path) -> Path:
        """Write the article as a UTF-8 text document in `folder`; its path."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.slug}.txt"
        if not path.exists() or path.read_text(encoding="utf-8") != self.text:
            path.write_text(self.text, encoding="utf-8")
        return path


def article_config(config: Config, article: SquadArticle, folder: Path) -> Config:
    """`config` pointed at the article, written into `folder`, with its own local (FAISS) index in
    `folder/<slug>`: an evaluation article is never published to a shared store."""
    store = config.store.model_copy(update={"backend": "faiss"})
    return config.model_copy(
        update={"documents": [article.write(folder)], "index_dir": folder / article.slug, "store": store}
    )


def load_squad(path: Path) -> list[SquadArticle]:
    """Every article of a SQuAD-format JSON file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [_article(record) for record in data["data"]]
    except OSError as exc:
        raise ConfigError(f"cannot read SQuAD file {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: not a SQuAD-format file ({exc!r})") from None


def load_squads(paths: list[Path]) -> list[SquadArticle]:
    """Every article of several SQuAD-format files, in order; ConfigError when two share a title."""
    articles = [a for path in paths for a in load_squad(path)]
    titles = [a.title for a in articles]
    repeated = sorted({t for t in titles if titles.count(t) > 1})
    if repeated:
        raise ConfigError(f"--squad: several articles titled {', '.join(repeated)}")
    return articles


def held_out_articles(path: Path) -> frozenset[str]:
    """The titles a split file (``{"held_out": {file name: [titles]}}``, see eval/squad/split.json) holds out."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return frozenset(str(title) for titles in data["held_out"].values() for title in titles)
    except OSError as exc:
        raise ConfigError(f"cannot read the split file {path}: {exc.strerror} (--split names another)") from None
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: not a split file ({exc!r}); it needs held_out: {{file: [titles]}}") from None


def select(articles: list[SquadArticle], spec: str | None, held_out: Collection[str] = ()) -> list[SquadArticle]:
    """Articles named by `spec`: None for all, a number N for the first N, "held-out" for those in
    `held_out` (the split's report articles), else comma-separated titles."""
    if not spec:
        return articles
    if spec.strip() == "held-out":
        return [a for a in articles if a.title in held_out]
    if spec.strip().isdigit():
        return articles[: int(spec)]
    by_title = {a.title: a for a in articles}
    wanted = [t.strip() for t in spec.split(",") if t.strip()]
    missing = [t for t in wanted if t not in by_title]
    if missing:
        raise ConfigError(f"--articles: no article titled {', '.join(missing)} (titles: {', '.join(by_title)})")
    return [by_title[t] for t in wanted]


def _article(record: dict[str, Any]) -> SquadArticle:
    title = str(record["title"])
    text = title.replace("_", " ")
    questions, spans = [], {}
    for paragraph in record["paragraphs"]:
        context = re.sub(r"\n(?=[ \t]*\n)", " ", paragraph["context"])  # no blank line inside; same offsets
        offset = len(text) + 2
        text = f"{text}\n\n{context}"
        for qa in paragraph["qas"]:
            answers = [a for a in qa.get("answers", []) if a["text"].strip()]
            unanswerable = bool(qa.get("is_impossible")) or not answers
            gold = () if unanswerable else tuple(dict.fromkeys(a["text"] for a in answers))
            questions.append(Question(str(qa["id"]), 0, qa["question"], gold))
            spans[str(qa["id"])] = tuple(
                (offset + a["answer_start"], offset + a["answer_start"] + len(a["text"]))
                for a in answers
                if not unanswerable
            )
    return SquadArticle(title, text + "\n", tuple(questions), spans)
