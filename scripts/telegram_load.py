"""The Telegram bot under load, for `rag bench`: the real `bot.py` against the test suite's fake
Bot API (`tests/fake_telegram.py`), 100 chats sending 5 questions each at once (the load of
`tests/test_bot_telegram.py`, from `tests/bot_harness.load`). Prints one JSON object:
answers_per_s, p50_ms, p95_ms. Needs a source checkout (it uses tests/).

    .venv/bin/python scripts/telegram_load.py      # about a minute
"""

import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.bench_workers import percentile  # noqa: E402  (after the checkout is on the path)
from rag.config import default_onnx_dir  # noqa: E402
from tests.bot_harness import latencies, load, running_bot, write_config  # noqa: E402
from tests.fake_telegram import FakeTelegram  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as folder, FakeTelegram() as fake:
        work = Path(folder)
        telegram = {"questions_per_minute": 10, "messages_per_second": 1000}
        config = write_config(work / "bot.yaml", ROOT / "data" / "dw-icc-sanctions.txt", telegram)
        with running_bot(fake, config, work / "index", work / "bot.log", default_onnx_dir()):
            elapsed, pushed = load(fake)
            waits = latencies(fake, pushed)
    figures = {
        "answers_per_s": len(pushed) / elapsed,
        "p50_ms": statistics.median(waits) * 1000,
        "p95_ms": (percentile(waits, 95) or 0.0) * 1000,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
