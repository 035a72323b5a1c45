"""Shared fixtures: no network, data folders under tmp_path, and one real engine per session.

The engine fixtures use the real packaged embedding model, FAISS and BM25 on the bundled DW
article; building the index takes a few seconds, so it is built once per test session.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NETGUARD = Path(__file__).resolve().parent / "netguard"
DW_ARTICLE = ROOT / "data" / "dw-icc-sanctions.txt"

sys.path.insert(0, str(NETGUARD))
import sitecustomize  # noqa: E402,F401  (installs the loopback-only socket guard in this process too)

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


@pytest.fixture(scope="module")
def fake():
    """A fake Telegram Bot API server shared by one test module's bot processes."""
    from tests.fake_telegram import FakeTelegram

    with FakeTelegram() as server:
        yield server


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory) -> Path:
    """One ONNX export of the embedding model for the whole test session (it takes seconds)."""
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(autouse=True)
def isolated_paths(tmp_path_factory, monkeypatch, onnx_dir):
    """Every test gets its own index folder; nothing is written into the working copy."""
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path_factory.mktemp("index")))
    monkeypatch.setenv("RAG_ONNX_DIR", str(onnx_dir))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(NETGUARD), str(ROOT)]))


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("session")


@pytest.fixture(scope="session")
def article(session_dir) -> Path:
    """A private copy of the DW article (tests may not edit the bundled one)."""
    path = session_dir / "dw-icc-sanctions.txt"
    shutil.copy(DW_ARTICLE, path)
    return path


@pytest.fixture(scope="session")
def config(article, session_dir, onnx_dir):
    from rag.config import load_config

    config = load_config(ROOT / "config.yaml", doc=article, index_dir=session_dir / "index")
    return config.model_copy(update={"embedding": config.embedding.model_copy(update={"onnx_dir": onnx_dir})})


def engine_on(path: Path, index_dir: Path, onnx_dir: Path):
    """An engine answering from the document at `path` alone (the project config otherwise), its
    index in `index_dir` and the session's ONNX export."""
    from rag.config import load_config
    from rag.engine import Engine

    config = load_config(ROOT / "config.yaml", doc=path, index_dir=index_dir)
    return Engine.open(
        config.model_copy(update={"embedding": config.embedding.model_copy(update={"onnx_dir": onnx_dir})})
    )


@pytest.fixture(scope="session")
def engine(config):
    from rag.engine import Engine

    return Engine.open(config)


@pytest.fixture(scope="session")
def shared_index_dir(engine) -> Path:
    """An index folder already built for the DW article (for CLI subprocess tests)."""
    return engine.config.index_dir


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """One real PostgreSQL with pgvector for the session, started and stopped by
    `scripts/postgres.sh`: (its folder, its port, its URL). A restart on the same port keeps the URL."""
    from tests.bot_harness import free_port
    from tests.pg_harness import postgres

    folder, port = tmp_path_factory.mktemp("postgres"), free_port()
    yield folder, port, postgres("start", folder, port)
    postgres("stop", folder)


@pytest.fixture
def database(postgres_server, request) -> str:
    """A new, empty database for one test: its DATABASE_URL."""
    from rag.database import new_database

    name = "t_" + "".join(ch if ch.isalnum() else "_" for ch in request.node.name.lower())[:50]
    return new_database(postgres_server[2], name)
