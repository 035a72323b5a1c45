"""Start the real `bot.py` in a subprocess against a `FakeTelegram` server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import NETGUARD, ROOT
from tests.fake_telegram import FakeTelegram


def free_port() -> int:
    """A loopback port nothing listens on (until someone binds it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(path: Path, document: Path, telegram: dict[str, Any], **settings: Any) -> Path:
    path.write_text(yaml.safe_dump({"documents": [str(document)], "telegram": telegram, **settings}), encoding="utf-8")
    return path


@contextmanager
def running_bot(
    fake: FakeTelegram,
    config: Path,
    index_dir: Path,
    log: Path,
    onnx_dir: Path,
    extra_env: dict[str, str] | None = None,
    client: str = "",
):
    """The bot process, ready (command menu registered); stopped with SIGTERM afterwards. With
    `client`, the fake records its calls with `via=client`."""
    env = (
        (extra_env or {})
        | os.environ
        | {
            "TELEGRAM_BOT_TOKEN": fake.token,
            "TELEGRAM_API_BASE_URL": fake.base_url_for(client) if client else fake.base_url,
            "RAG_CONFIG": str(config),
            "RAG_INDEX_DIR": str(index_dir),
            "RAG_ONNX_DIR": str(onnx_dir),
            "LOG_LEVEL": "DEBUG",
            "PYTHONPATH": os.pathsep.join([str(NETGUARD), str(ROOT)]),
        }
    )
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "bot.py"], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
        try:
            fake.wait_until(lambda: bool(fake.sent(method="setMyCommands")) or process.poll() is not None, timeout=240)
            assert process.poll() is None, log.read_text()
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen, timeout: float = 60) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


LOAD_QUESTIONS = [
    "who revoked Bensouda's visa?",
    "Who is the US Secretary of State?",
    "How did the ICC describe the sanctions?",
    "How many US soldiers did Trump pardon?",
    "What is the capital of France?",
]
LOAD_CHATS = range(10_000, 10_100)


def load(fake: FakeTelegram, chats: range = LOAD_CHATS, timeout: float = 600) -> tuple[float, list[tuple[int, dict]]]:
    """The load the test suite and `rag bench` put on a running bot (`scripts/telegram_load.py`):
    each of `chats` sends the `LOAD_QUESTIONS` in turn, all at once; the seconds until every one
    is answered, and the (chat, message) pushed, in push order."""
    started = time.monotonic()
    pushed = [(chat, fake.push_text(chat, question, user_id=chat)) for question in LOAD_QUESTIONS for chat in chats]
    fake.wait_until(lambda: all(fake.replies_to(m) for _, m in pushed), timeout=timeout)
    return time.monotonic() - started, pushed


def latencies(fake: FakeTelegram, pushed: list[tuple[int, dict]]) -> list[float]:
    """Seconds from each pushed question to its first reply."""
    return [fake.replies_to(m)[0].at - fake.pushed_at[m["message_id"]] for _, m in pushed]
