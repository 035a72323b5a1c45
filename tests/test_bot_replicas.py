"""Two real `bot.py` replicas in webhook mode on one PostgreSQL store (a real server from
`scripts/postgres.sh`), answering through the fake Bot API: every update answered once and in
order per chat, follow-ups and buttons that cross replicas, the database stopping mid-question,
a newly published index, and a replica killed mid-load."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import datetime

import httpx
import psycopg
import pytest

from rag.bot.webhook import HEALTH_PATH, SECRET_HEADER
from tests.bot_harness import free_port, running_bot, write_config
from tests.conftest import ROOT
from tests.fake_telegram import FakeTelegram, unbolded
from tests.pg_harness import postgres, postgres_config, publish, table_locked, wait_until_a_query_waits_for

pytestmark = pytest.mark.slow  # starts the bot, a server or PostgreSQL: not in the fast tier

SECRET = "replicas-Secret_1"
PATH = "/tg"
# (question, what its reply must hold): the 2nd and 4th are follow-ups, posted to the other replica
TURNS = [
    ("Who is the US Secretary of State?", "Pompeo"),
    ("What did he call the court?", "kangaroo court"),
    ("who revoked Bensouda's visa?", "revoked the American visa"),
    ("Where was she born?", "Gambian-born"),
    ("Which allies could be next?", "NATO"),
]


class Replicas(list):
    """The running replicas (processes with `url`, `name`, `document`, `database_url` and
    `publish()`); `start(name)` starts one more."""

    start: Callable[[str], subprocess.Popen]


@pytest.fixture(scope="module")
def replicas(fake, article, onnx_dir, postgres_server, tmp_path_factory):
    """Two bot replicas, "a" and "b", sharing one database and one webhook URL."""
    from rag.database import new_database

    folder = tmp_path_factory.mktemp("replicas")
    document = folder / "article.txt"  # its own copy: a test adds to it
    shutil.copy(article, document)
    database_url = new_database(postgres_server[2], "replicas")
    built = publish(postgres_config(folder, document), folder / "writer", database_url)
    assert built.returncode == 0, built.stderr
    env = {"TELEGRAM_WEBHOOK_SECRET": SECRET, "DATABASE_URL": database_url}
    with ExitStack() as stack:

        def start(name: str) -> subprocess.Popen:
            port = free_port()
            telegram = {
                "mode": "webhook", "webhook_url": f"https://bot.example.org{PATH}", "listen": "127.0.0.1",
                "port": port, "questions_per_minute": 1000, "messages_per_second": 1000,
                "group_messages_per_minute": 1000,
            }  # fmt: skip
            config = write_config(folder / f"{name}.yaml", document, telegram, store={"backend": "postgres"})
            process = stack.enter_context(
                running_bot(fake, config, folder / f"cache-{name}", folder / f"{name}.log", onnx_dir, env, name)
            )
            process.url, process.name = f"http://127.0.0.1:{port}", name
            wait_until_ready(process)
            process.publish = lambda: publish(postgres_config(folder, document), folder / "writer", database_url)
            process.document, process.database_url = document, database_url
            return process

        group = Replicas(start(name) for name in ("a", "b"))
        group.start = start
        yield group


def wait_until_ready(process) -> None:
    for _ in range(600):
        assert process.poll() is None, "the replica exited"
        try:
            if httpx.get(process.url + HEALTH_PATH, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the replica did not get ready")


def post(process, update: dict) -> int:
    """Post like Telegram: the status code, or 0 when the connection failed (no acknowledgement)."""
    try:
        return httpx.post(
            process.url + PATH, content=json.dumps(update), headers={SECRET_HEADER: SECRET}, timeout=120
        ).status_code
    except httpx.TransportError:
        return 0


def conversation(fake: FakeTelegram, chat: int, first_update_id: int) -> list[dict]:
    return [
        {"update_id": first_update_id + i, "message": fake.user_message(chat, text=question)}
        for i, (question, _) in enumerate(TURNS)
    ]


def test_100_chats_5_questions_posted_alternately_to_two_replicas_are_answered_once_in_order(fake, replicas):
    chats = range(10_000, 10_100)
    updates = {chat: conversation(fake, chat, 1_000_000 + 10 * chat) for chat in chats}

    def ask_in_order(chat: int) -> list[int]:
        return [post(replicas[(chat + i) % 2], update) for i, update in enumerate(updates[chat])]

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = list(pool.map(ask_in_order, chats))
    seconds = time.perf_counter() - started
    print(f"\n500 questions over two replicas in {seconds:.1f} s ({500 / seconds:.1f} a second)")
    assert all(c == [200] * len(TURNS) for c in codes)
    assert httpx.post(replicas[0].url + PATH, content=b"{}", headers={SECRET_HEADER: "wrong"}).status_code == 403
    for chat, chat_updates in updates.items():
        sent = fake.sent(chat)
        assert [c.params["reply_parameters"]["message_id"] for c in sent] == [
            u["message"]["message_id"] for u in chat_updates
        ]  # each answered once, in the order asked
        for call, (_, expected) in zip(sent, TURNS, strict=True):
            assert expected in unbolded(call.params["text"]), (chat, call.params["text"])


def test_the_database_stopping_mid_question_gives_a_clear_reply_and_the_next_question_an_answer(
    fake, replicas, postgres_server
):
    from rag.pgstore import vectors_table

    folder, port, _ = postgres_server
    database_url = replicas[1].database_url
    with psycopg.connect(database_url) as connection:
        table = vectors_table(connection.execute("SELECT generation FROM rag_current").fetchone()[0])
    away = {"update_id": 3_000_001, "message": fake.user_message(30_000, text="who revoked Bensouda's visa?")}
    with ThreadPoolExecutor(max_workers=1) as pool, table_locked(database_url, table):
        posted = pool.submit(post, replicas[1], away)
        wait_until_a_query_waits_for(database_url, table)  # the question is inside its vector search
        try:
            postgres("stop", folder)
            assert posted.result(timeout=120) == 200
        finally:
            postgres("start", folder, port)
    assert [c.params["text"] for c in fake.sent(30_000)] == [
        "The document store is unavailable right now. Please ask again in a minute."
    ]
    back = {"update_id": 3_000_002, "message": fake.user_message(30_000, text="who revoked Bensouda's visa?")}
    assert post(replicas[1], back) == 200
    assert "revoked the American visa" in fake.replies_to(back["message"])[0].params["text"]


def test_a_replica_answers_from_a_newly_published_index_at_its_next_question(fake, replicas):
    replica = replicas[1]
    with replica.document.open("a", encoding="utf-8") as text:
        text.write("\n\nThe court's spokesman is Fadi El Abdallah.\n")
    built = replica.publish()
    assert built.returncode == 0 and "Published generation" in built.stderr, built.stderr
    update = {"update_id": 4_000_001, "message": fake.user_message(40_000, text="Who is the court's spokesman?")}
    assert post(replica, update) == 200
    assert "Fadi El Abdallah" in fake.replies_to(update["message"])[0].params["text"]


def test_a_replica_keeps_answering_when_an_index_of_other_documents_is_published(fake, replicas, tmp_path):
    replica = replicas[1]
    notes = tmp_path / "notes.txt"
    notes.write_text("The orchard lost 40 apple trees in the storm of 2019.\n", encoding="utf-8")
    built = publish(postgres_config(tmp_path, notes), tmp_path / "writer", replica.database_url)
    assert built.returncode == 0 and "Published generation" in built.stderr, built.stderr
    try:
        update = {"update_id": 4_500_001, "message": fake.user_message(45_000, text="who revoked Bensouda's visa?")}
        assert post(replica, update) == 200
        assert "revoked the American visa" in fake.replies_to(update["message"])[0].params["text"]
        assert "Not switching to index generation" in (replica.document.parent / f"{replica.name}.log").read_text()
    finally:  # the article again, for the tests after this one
        assert replica.publish().returncode == 0


def test_buttons_and_sources_work_on_the_other_replica_and_only_in_their_own_chat(fake, replicas):
    asked, other = replicas
    chat, stranger = 50_000, 50_001
    question = {"update_id": 5_000_001, "message": fake.user_message(chat, text="who revoked Bensouda's visa?")}
    assert post(asked, question) == 200
    (answer,) = fake.replies_to(question["message"])
    markup = answer.params["reply_markup"]["inline_keyboard"]
    keys = {b["text"]: b["callback_data"] for row in markup for b in row}
    for update_id, button in enumerate(("Sources", "More context"), start=5_000_002):
        assert post(other, {"update_id": update_id, **fake.callback(answer.result, keys[button], chat)}) == 200
    sources, context = fake.replies_to(answer.result)
    assert sources.via == context.via == other.name
    assert "revoked the American visa" in sources.params["text"] and "paragraph" in sources.params["text"]
    assert "(cited)" in context.params["text"] and "revoked the American visa" in context.params["text"]
    command = {"update_id": 5_000_004, "message": fake.user_message(chat, text="/sources")}
    assert post(other, command) == 200
    assert "revoked the American visa" in fake.replies_to(command["message"])[0].params["text"]
    elsewhere = fake.user_message(stranger, text="hello")  # chat's button key, tapped in another chat
    assert post(other, {"update_id": 5_000_005, **fake.callback(elsewhere, keys["Sources"], stranger)}) == 200
    assert "expired" in fake.sent(method="answerCallbackQuery")[-1].params["text"]
    assert fake.sent(stranger) == []


def test_two_questions_of_one_chat_at_once_on_two_replicas_both_stay_in_its_conversation(fake, replicas):
    """A chat's turns are answered one at a time across replicas, so neither answer's saved
    conversation overwrites the other's turn."""
    chat = 60_000
    both = [
        {"update_id": 6_000_001 + i, "message": fake.user_message(chat, text=question)}
        for i, (question, _) in enumerate(TURNS[::2][:2])
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        assert list(pool.map(post, replicas, both)) == [200, 200]
    with psycopg.connect(replicas[0].database_url) as connection:
        (session,) = connection.execute(
            "SELECT session FROM rag_bot_conversations WHERE chat_id = %s", (chat,)
        ).fetchone()
    assert sorted(question for question, _ in session["turns"]) == sorted(u["message"]["text"] for u in both)


def test_a_replica_killed_mid_load_leaves_its_unacknowledged_updates_to_the_other(fake, replicas):
    """Telegram posts an update again when it got no 2xx: here, to the surviving replica, which
    answers it once, unless the victim recorded it as answered before dying. The victim may have
    sent its reply and died before recording it: that update is answered twice (at least once;
    no replica can tell whether the reply went out), and only then."""
    victim, survivor = replicas
    chats = range(20_000, 20_030)
    updates = {chat: conversation(fake, chat, 2_000_000 + 10 * chat)[:3] for chat in chats}
    acknowledged_by_victim: list[dict] = []
    unacknowledged: list[dict] = []  # posted to the victim, which died before answering 200
    redelivered: list[dict] = []  # posted to the survivor (after the victim failed, or was dead)

    def ask_in_order(chat: int) -> None:
        for update in updates[chat]:
            if victim.poll() is None:
                if post(victim, update) == 200:
                    acknowledged_by_victim.append(update)
                    continue
                unacknowledged.append(update)
            redelivered.append(update)
            assert post(survivor, update) == 200

    with ThreadPoolExecutor(max_workers=30) as pool:
        work = [pool.submit(ask_in_order, chat) for chat in chats]
        fake.wait_until(lambda: len(acknowledged_by_victim) >= 20, timeout=120)
        killed_at = database_clock(victim.database_url)
        victim.send_signal(signal.SIGKILL)
        for done in work:
            done.result()
    victim.wait()
    recorded = answered_at(victim.database_url)

    def replies(update: dict, replica) -> int:
        return sum(c.via == replica.name for c in fake.replies_to(update["message"]))

    assert all((replies(u, victim), replies(u, survivor)) == (1, 0) for u in acknowledged_by_victim)
    assert unacknowledged, "the victim was killed with no update in flight"
    twice = 0
    for update in redelivered:
        by_victim, by_survivor = replies(update, victim), replies(update, survivor)
        assert (by_victim, by_survivor) in ((0, 1), (1, 0), (1, 1)), update["update_id"]
        if by_victim and by_survivor:  # the victim had not recorded it: the first record is the survivor's
            assert recorded[update["update_id"]] > killed_at
            twice += 1
    print(
        f"\nkilled after {len(acknowledged_by_victim)} acknowledged, {len(unacknowledged)} in flight;"
        f" answered twice (the victim's reply had gone out, unrecorded): {twice} of {len(redelivered)} redelivered"
    )
    everything = [u for chat_updates in updates.values() for u in chat_updates]
    counts = {u["update_id"]: len(fake.replies_to(u["message"])) for u in everything}
    with ThreadPoolExecutor(max_workers=10) as pool:  # every update posted once more: all were recorded
        assert set(pool.map(lambda update: post(survivor, update), everything)) == {200}
    assert {u["update_id"]: len(fake.replies_to(u["message"])) for u in everything} == counts
    replicas[0] = replicas.start("a-again")  # two replicas again, for any test after this one


def database_clock(database_url: str) -> datetime:
    with psycopg.connect(database_url) as connection:
        return connection.execute("SELECT clock_timestamp()").fetchone()[0]


def answered_at(database_url: str) -> dict[int, datetime]:
    """When each update was recorded as answered (the first record: later ones are ignored)."""
    with psycopg.connect(database_url) as connection:
        return dict(connection.execute("SELECT update_id, answered FROM rag_bot_updates").fetchall())


def test_a_replica_started_while_the_database_is_down_exits_75_to_be_restarted(fake, article, onnx_dir, tmp_path):
    from rag.bot.app import TEMPORARY_FAILURE

    config = write_config(tmp_path / "bot.yaml", article, {}, store={"backend": "postgres"})
    env = os.environ | {
        "TELEGRAM_BOT_TOKEN": fake.token, "TELEGRAM_API_BASE_URL": fake.base_url, "RAG_CONFIG": str(config),
        "RAG_INDEX_DIR": str(tmp_path / "cache"), "RAG_ONNX_DIR": str(onnx_dir),
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/rag",  # no server there
    }  # fmt: skip
    done = subprocess.run([sys.executable, "bot.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == TEMPORARY_FAILURE, done.stderr
    assert "error: the database at postgresql://postgres@127.0.0.1:" in done.stderr and "unavailable" in done.stderr
