"""Write into requirements.lock the sha256 of every file PyPI has for each pinned version, so that
`pip install --require-hashes -r requirements.lock` (scripts/setup.sh) refuses any other file:
a re-uploaded or replaced file fails set-up instead of changing answers.

Usage (from a checkout; standard library only, Python 3.10 or newer):
    python3 scripts/lock_hashes.py            # rewrite requirements.lock
    python3 scripts/lock_hashes.py --check    # exit 1, rewriting nothing, if it would change

The `name==version` lines are the pins: to change one, edit its version (its old hashes may stay,
they are replaced) and run this. Hashes come from PyPI's JSON API, for every file of that version
(wheels for all platforms and the sdist), so the lock installs on other platforms too. Files of
the pinned version that lie in a local find-links folder (`--find-links DIR`, default: the folders
in PIP_FIND_LINKS) are hashed too: on this project's machines that is the CPU build of torch
(`torch-2.13.0+cpu-...whl` in /opt/wheels), which is not on PyPI and which `pip install
torch==2.13.0` takes there. Such a local wheel replaces PyPI's wheel of the same platform tags
(for torch, the CUDA build, whose dependencies are not in the lock): pip prefers a file whose hash
the index shows to one from a folder, so with both hashes listed it would take PyPI's.

Comment lines above a requirement are kept; a comment after a requirement on its line is moved
above it (pip would drop the hashes of a continued line after a `#`). Prints, per requirement, the
hashes added and removed, so a changed upload shows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPI = "https://pypi.org/pypi"
HEADER = """\
# Every dependency of the project, pinned, with the sha256 of every file PyPI has for that version;
# for torch on Linux x86_64 with Python 3.11, of the CPU build that lies in /opt/wheels on this
# project's machines instead of PyPI's CUDA build (pip would prefer PyPI's file if both were listed).
# scripts/setup.sh installs it with --require-hashes: a file whose hash is not listed fails set-up.
# To change a pin, edit its version and regenerate the hashes (standard library, needs PyPI):
#     python3 scripts/lock_hashes.py            # rewrites this file; --check only compares
# on a machine where PIP_FIND_LINKS holds the CPU torch wheel (or pass --find-links DIR).
"""
REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>[^\s;\\#]+)")
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class Entry:
    """One requirement of the lock: the comment lines above it, its spec and its hashes."""

    def __init__(self, comments: list[str], spec: str, hashes: list[str]) -> None:
        match = REQUIREMENT.match(spec)
        if not match:
            raise SystemExit(f"lock_hashes: not a name==version requirement: {spec!r}")
        self.comments, self.spec, self.old = comments, spec, hashes
        self.name, self.version = match["name"], match["version"]
        self.hashes: list[str] = []
        self.local: list[str] = []  # names of local files whose hashes were added
        self.replaced: list[str] = []  # names of PyPI's files that those replace (same wheel tags)


def parse(text: str) -> list[Entry]:
    """The requirements of a lock file, without its leading comment block (the header)."""
    lines = text.splitlines()
    while lines and (not lines[0].strip() or lines[0].startswith("#")):
        lines.pop(0)
    entries: list[Entry] = []
    comments: list[str] = []
    logical = ""
    for line in lines:
        if not logical and line[:1].isspace() and line.strip().startswith("#"):
            continue  # an indented note this script wrote after a requirement's hashes
        if not logical and (not line.strip() or line.startswith("#")):
            comments.append(line)
            continue
        logical += line.rstrip().removesuffix("\\") + " "
        if line.rstrip().endswith("\\"):
            continue
        body, _, comment = logical.partition(" #")
        hashes = HASH.findall(body)
        spec = re.sub(r"\s*--hash=\S+", "", body).strip()
        if comment.strip():
            comments.append("# " + comment.strip())
        entries.append(Entry(comments, spec, hashes))
        comments, logical = [], ""
    if logical:
        raise SystemExit("lock_hashes: the last requirement ends with a line continuation")
    return entries


def fetch_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=120) as response:
        return json.load(response)


def pypi_files(name: str, version: str) -> dict[str, str]:
    """File name to sha256 of every file PyPI has for NAME==VERSION (the release's JSON, else the project's)."""
    try:
        files = fetch_json(f"{PYPI}/{name}/{version}/json")["urls"]
    except urllib.error.HTTPError as error:
        if error.code != 404:
            raise
        files = fetch_json(f"{PYPI}/{name}/json")["releases"].get(version, [])
    if not files:
        raise SystemExit(f"lock_hashes: PyPI has no file for {name}=={version}")
    return {file["filename"]: file["digests"]["sha256"] for file in files}


def wheel_tags(filename: str) -> str | None:
    """The python-abi-platform tags of a wheel's file name, None for an sdist."""
    return "-".join(filename.removesuffix(".whl").split("-")[-3:]) if filename.endswith(".whl") else None


def local_files(folders: list[Path], name: str, version: str) -> list[Path]:
    """Distribution files of NAME==VERSION (a local label such as +cpu included) in FOLDERS."""
    found = []
    for folder in folders:
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if path.name.endswith(".whl"):
                parts = path.name[: -len(".whl")].split("-")
            elif path.name.endswith((".tar.gz", ".zip")):
                parts = path.name.removesuffix(".tar.gz").removesuffix(".zip").rsplit("-", 1)
            else:
                continue
            if len(parts) < 2 or normalize(parts[0]) != normalize(name):
                continue
            if parts[1] == version or parts[1].startswith(version + "+"):
                found.append(path)
    return found


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def render(entries: list[Entry]) -> str:
    out = [HEADER]
    for entry in entries:
        out.extend(line + "\n" for line in entry.comments)
        out.append(entry.spec + " \\\n")
        out.append(" \\\n".join(f"    --hash=sha256:{h}" for h in entry.hashes) + "\n")
        out.extend(f"    # {name}: not on PyPI; the file pip takes from the local find-links\n" for name in entry.local)
        out.extend(f"    # {name}: PyPI's, left out for the local file of the same tags\n" for name in entry.replaced)
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lock", type=Path, default=ROOT / "requirements.lock")
    parser.add_argument("--find-links", type=Path, action="append", help="default: the folders in PIP_FIND_LINKS")
    parser.add_argument("--check", action="store_true", help="exit 1 if the lock would change; write nothing")
    args = parser.parse_args(argv)
    folders = args.find_links
    if folders is None:
        folders = [Path(f) for f in os.environ.get("PIP_FIND_LINKS", "").split() if "://" not in f]

    text = args.lock.read_text()
    entries = parse(text)
    with ThreadPoolExecutor(max_workers=8) as pool:
        remote = list(pool.map(lambda e: pypi_files(e.name, e.version), entries))
    for entry, files in zip(entries, remote, strict=True):
        local = {path.name: sha256(path) for path in local_files(folders, entry.name, entry.version)}
        local = {name: digest for name, digest in local.items() if digest not in files.values()}  # not copies
        tags = {wheel_tags(name) for name in local} - {None}
        entry.local = sorted(local)
        entry.replaced = sorted(name for name in files if wheel_tags(name) in tags)
        kept = {digest for name, digest in files.items() if name not in entry.replaced}
        entry.hashes = sorted(kept) + sorted(set(local.values()) - kept)
        added, removed = set(entry.hashes) - set(entry.old), set(entry.old) - set(entry.hashes)
        if added or removed:
            print(f"{entry.name}=={entry.version}: {len(added)} hashes added, {len(removed)} removed", file=sys.stderr)
        for name in entry.local:
            print(f"{entry.name}=={entry.version}: also {name} (local)", file=sys.stderr)
        for name in entry.replaced:
            print(f"{entry.name}=={entry.version}: not PyPI's {name} (replaced by the local file)", file=sys.stderr)

    new = render(entries)
    if new == text:
        print(f"lock_hashes: {args.lock.name} is up to date ({len(entries)} requirements)", file=sys.stderr)
        return 0
    if args.check:
        print(f"lock_hashes: {args.lock.name} would change", file=sys.stderr)
        return 1
    args.lock.write_text(new)
    print(f"lock_hashes: wrote {args.lock.name} ({len(entries)} requirements)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
