"""The built wheel, installed (not editable) into a fresh venv and run outside the checkout.

The venv is made with `--without-pip`; a .pth file puts the project venv's site-packages after
its own, so the pinned dependencies are found offline while `rag` itself can only come from the
wheel (the project venv's editable install is a .pth hook there, which a plain path entry does
not run). Everything runs in a temporary folder with its own user cache (XDG_CACHE_HOME).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.bot_harness import stop
from tests.conftest import NETGUARD, ROOT
from tests.fake_telegram import FakeTelegram

pytestmark = pytest.mark.slow

# Package data that must be in the wheel, each the same bytes as the checkout's top-level file.
DEFAULTS = ["config.yaml", "data/dw-icc-sanctions.txt", "eval/dw-icc-sanctions.jsonl", "eval/docs/python-license.txt"]
SKIP = shutil.ignore_patterns(".venv", ".git", "index", "__pycache__", "*.egg-info", "build", ".pytest_cache")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the checkout (setuptools writes build/ beside the sources).
    Symlinks are copied as symlinks, as a checkout has them."""
    folder = tmp_path_factory.mktemp("wheel")
    source = folder / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=SKIP)
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(folder),
        str(source),
    ]
    built = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    (path,) = folder.glob("rag-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv with only the wheel installed in it; returns its bin folder."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--clear", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    (Path(site.stdout.strip()) / "project-dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8"
    )
    command = [
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(python),
        "install",
        "--no-deps",
        "--no-index",
        "-q",
        str(wheel),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return venv / "bin"


@pytest.fixture
def outside(tmp_path, onnx_dir) -> tuple[Path, dict[str, str]]:
    """A working folder outside the checkout, and an environment that points nowhere into it."""
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "PYTHON", "VIRTUAL_ENV"))}
    env |= {
        "PYTHONPATH": str(NETGUARD),  # only the loopback-only socket guard
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "RAG_ONNX_DIR": str(onnx_dir),  # the session's ONNX export (the default cache would export again)
        "HF_HUB_OFFLINE": "1",
        "PATH": os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(ROOT))),
    }
    return work, env


def test_the_wheel_carries_the_bot_the_ranker_model_and_the_defaults(wheel):
    archive = zipfile.ZipFile(wheel)
    names = set(archive.namelist())
    assert {
        "rag/bot/app.py",
        "rag/bot/handlers.py",
        "rag/bot/__main__.py",
        "rag/models/ranker.json",
        "rag/models/minilm-qa.safetensors",
        "rag/rank.py",
    } <= names
    for name in DEFAULTS:
        assert archive.read(f"rag/defaults/{name}") == (ROOT / name).read_bytes(), name
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    scripts = archive.read(entry_points).decode()
    assert "rag = rag.cli:main" in scripts and "rag-bot = rag.bot.app:main" in scripts


def test_the_installed_rag_answers_from_the_packaged_defaults_outside_the_checkout(installed, outside):
    work, env = outside
    where = subprocess.run(
        [installed / "python", "-c", "import rag, rag.bot.app; print(rag.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert where.returncode == 0, where.stderr
    package = Path(where.stdout.strip()).parent
    assert package.is_relative_to(installed.parent) and not package.is_relative_to(ROOT)

    asked = subprocess.run(
        [installed / "rag", "ask", "who revoked Bensouda's visa?"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert asked.returncode == 0, asked.stderr
    assert "revoked the American visa" in asked.stdout and "[1]" in asked.stdout
    assert str(package / "defaults" / "data" / "dw-icc-sanctions.txt") in asked.stdout  # the cited source
    index = Path(env["XDG_CACHE_HOME"]) / "rag" / "index"
    assert (index / "manifest.json").is_file(), asked.stderr  # in the user cache,
    assert not list(package.rglob("*.faiss"))  # not in site-packages
    assert not list(work.iterdir())  # nor in the working folder


def test_the_installed_bench_finds_its_question_set_and_says_what_it_cannot_run(installed, outside):
    work, env = outside
    probe = (
        "from rag import bench; print(len(bench._questions()), bench.SECOND_DOCUMENT.is_file());"
        " print(bench._bot_section().title)"
    )
    result = subprocess.run(
        [installed / "python", "-c", probe], cwd=work, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    counts, bot_row = result.stdout.strip().splitlines()
    assert int(counts.split()[0]) > 40 and counts.split()[1] == "True"
    assert bot_row.endswith(": skipped, it needs a source checkout (scripts/telegram_load.py)")


def test_the_installed_bot_answers_on_telegram_with_the_packaged_defaults(installed, outside):
    work, env = outside
    log = work.parent / "bot.log"
    with FakeTelegram() as fake, log.open("w") as output:
        env |= {"TELEGRAM_BOT_TOKEN": fake.token, "TELEGRAM_API_BASE_URL": fake.base_url}
        process = subprocess.Popen([installed / "rag-bot"], cwd=work, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            fake.wait_until(lambda: bool(fake.sent(method="setMyCommands")) or process.poll() is not None, timeout=240)
            assert process.poll() is None, log.read_text()
            question = fake.push_text(111, "who revoked Bensouda's visa?")
            fake.wait_until(lambda: bool(fake.replies_to(question)), timeout=120)
            assert "revoked the American visa" in fake.replies_to(question)[0].params["text"]
        finally:
            stop(process)
