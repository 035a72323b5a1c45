import re
from pathlib import Path

import pytest

from rag.config import DEFAULTS_DIR, Config, load_config
from rag.errors import ConfigError
from tests.conftest import ROOT

PACKAGED = ["config.yaml", "data/dw-icc-sanctions.txt", "eval/dw-icc-sanctions.jsonl", "eval/docs/python-license.txt"]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_project_config_is_valid_and_matches_defaults(monkeypatch):
    monkeypatch.delenv("RAG_INDEX_DIR")
    from tests.conftest import ROOT

    config = load_config(ROOT / "config.yaml")
    defaults = Config()
    assert config.answer == defaults.answer
    assert config.retrieval == defaults.retrieval
    assert config.documents == [ROOT / "data" / "dw-icc-sanctions.txt"]
    assert config.index_dir == ROOT / "index"


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"retrieval\.topk: unknown key"):
        load_config(write(tmp_path, "retrieval:\n  topk: 3\n"))


def test_the_retired_llm_min_support_loads_with_one_warning(tmp_path, caplog):
    config = load_config(write(tmp_path, "llm:\n  min_support: 0.6\n  timeout_s: 5\n"))
    assert config.llm.timeout_s == 5 and not hasattr(config.llm, "min_support")
    assert [r.getMessage() for r in caplog.records] == ["llm.min_support is no longer used; remove it from your config"]


def test_bad_value_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"retrieval\.top_k"):
        load_config(write(tmp_path, "retrieval:\n  top_k: zero\n"))


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(write(tmp_path, "retrieval: [\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_paths_are_relative_to_the_file_and_overridable(tmp_path, monkeypatch):
    monkeypatch.delenv("RAG_INDEX_DIR")
    path = write(tmp_path, "documents: [docs/a.txt]\nindex_dir: idx\n")
    config = load_config(path)
    assert config.documents == [tmp_path / "docs" / "a.txt"]
    assert config.index_dir == tmp_path / "idx"
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "env-idx"))
    monkeypatch.setenv("RAG_DOC", str(tmp_path / "env.txt"))
    config = load_config(path)
    assert config.index_dir == tmp_path / "env-idx"
    assert config.documents == [tmp_path / "env.txt"]
    assert load_config(path, doc=tmp_path / "cli.txt").documents == [tmp_path / "cli.txt"]


def test_empty_file_gives_defaults(tmp_path):
    assert load_config(write(tmp_path, "")).retrieval.top_k == Config().retrieval.top_k


def test_the_onnx_export_is_cached_once_per_user_not_per_index(tmp_path, monkeypatch):
    from platformdirs import user_cache_path

    from rag.config import load_config

    monkeypatch.delenv("RAG_ONNX_DIR")
    first = load_config(index_dir=tmp_path / "a")
    second = load_config(index_dir=tmp_path / "b")
    assert first.embedding.onnx_dir == second.embedding.onnx_dir == (user_cache_path("rag") / "onnx").resolve()
    monkeypatch.setenv("RAG_ONNX_DIR", str(tmp_path / "mine"))
    assert load_config(index_dir=tmp_path / "a").embedding.onnx_dir == tmp_path / "mine"


@pytest.mark.parametrize("name", PACKAGED)
def test_the_packaged_defaults_are_the_top_level_files(name):
    """One copy each: rag/defaults/ holds symlinks to the top-level files (the wheel gets copies)."""
    packaged = DEFAULTS_DIR / name
    assert packaged.is_symlink(), f"{packaged} should be a relative symlink to {name}"
    assert packaged.resolve() == (ROOT / name).resolve()


def test_without_a_local_config_the_packaged_default_is_the_checkouts(tmp_path, monkeypatch):
    monkeypatch.delenv("RAG_INDEX_DIR")
    monkeypatch.chdir(tmp_path)  # no ./config.yaml here
    config = load_config()
    assert config.documents == [ROOT / "data" / "dw-icc-sanctions.txt"]
    assert config.index_dir == ROOT / "index"  # in a checkout: beside config.yaml, as before
    assert config.telegram.example_questions == load_config(ROOT / "config.yaml").telegram.example_questions


def test_documents_take_files_folders_and_globs(tmp_path):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / ".hidden").mkdir()
    for name in ["b.md", "a.txt", "sub/c.pdf", "notes.odt", "README", ".hidden/x.txt", "sub/page.html"]:
        (docs / name).write_text("x", encoding="utf-8")
    (tmp_path / "one.docx").write_text("x", encoding="utf-8")
    config_file = tmp_path / "config.yaml"
    config_file.write_text("documents: [docs, '*.docx']\n", encoding="utf-8")
    config = load_config(config_file)
    assert [p.relative_to(tmp_path).as_posix() for p in config.documents] == [
        "docs/a.txt",
        "docs/b.md",
        "docs/sub/c.pdf",
        "docs/sub/page.html",
        "one.docx",
    ]
    globbed = load_config(config_file, doc=[docs / "**" / "*.pdf", docs / "a.txt", docs / "a.txt"])
    assert globbed.documents == [(docs / "sub" / "c.pdf").resolve(), (docs / "a.txt").resolve()]


@pytest.mark.parametrize("pattern", ["nothing-*.pdf", "empty"])
def test_a_folder_or_glob_without_documents_is_a_config_error(tmp_path, pattern):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "picture.png").write_bytes(b"\x89PNG")
    with pytest.raises(ConfigError, match=f"no documents match '.*{re.escape(pattern)}'"):
        load_config(doc=[tmp_path / pattern])


def test_webhook_mode_needs_a_webhook_url(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("telegram:\n  mode: webhook\n")
    with pytest.raises(ConfigError, match="telegram.mode: webhook needs telegram.webhook_url"):
        load_config(path)
    path.write_text("telegram:\n  mode: webhook\n  webhook_url: https://bot.example.org/tg\n  port: 8080\n")
    assert load_config(path).telegram.port == 8080


def test_environment_variables_are_read_in_one_place_and_documented_in_one_table():
    from rag.config import ENVIRONMENT

    readers, names = [], set()
    for path in (ROOT / "rag").rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        if re.search(r"os\.environ\.get\(|os\.environ\[[^]]+\](?!\s*=)|getenv\(", source):  # reads, not writes
            readers.append(path.name)
        names |= set(re.findall(r"\b(?:environment|_env_path)\(\"(\w+)\"\)", source))
    assert readers == ["config.py"]
    assert names == set(ENVIRONMENT)
    documented = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8").splitlines()
    table = [line for line in documented if line.startswith("| `")]
    assert {name for name in ENVIRONMENT if any(line.startswith(f"| `{name}`") for line in table)} == set(ENVIRONMENT)
