"""Document uploads on Telegram: the real bot.py against the fake Bot API, which serves getFile and downloads.

The bot has its own index folder here: uploads are added to the index, which the other tests share.
"""

from __future__ import annotations

import pytest

from rag.bot.render import plain_text
from tests.bot_harness import running_bot, write_config
from tests.fake_telegram import FakeTelegram
from tests.test_formats import make_pdf

pytestmark = pytest.mark.slow  # starts the bot, a server or PostgreSQL: not in the fast tier

ADMIN, USER = 7001, 7002
NOTES = b"# Meeting notes\n\nThe committee met on Tuesday. It adopted a budget of 7 million euros.\n"
BUDGET = "What budget did the committee adopt?"


@pytest.fixture(scope="module")
def bot(fake, article, onnx_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("upload-bot")
    telegram = {"admin_user_ids": [ADMIN], "messages_per_second": 1000, "questions_per_minute": 100}
    config = write_config(folder / "bot.yaml", article, telegram)
    with running_bot(fake, config, folder / "index", folder / "bot.log", onnx_dir) as process:
        process.log = folder / "bot.log"
        yield process


def texts(fake: FakeTelegram, message: dict, count: int, timeout: float = 120) -> list[str]:
    """The first `count` replies to `message`, once they have arrived."""
    fake.wait_until(lambda: len(fake.replies_to(message)) >= count, timeout=timeout)
    return [c.params["text"] for c in fake.replies_to(message)]


def ask(fake: FakeTelegram, chat_id: int, text: str) -> str:
    """The reply's text without its HTML tags (the short answer is in bold)."""
    return plain_text(texts(fake, fake.push_text(chat_id, text), 1)[0])


def test_an_admin_uploads_a_document_then_asks_lists_and_removes_it(fake, bot):
    upload = fake.push_document(ADMIN, "notes.md", NOTES)
    reading, added = texts(fake, upload, 2)
    assert reading == "Reading notes.md…"
    assert added == "Added notes.md: 2 passages. Ask me about it."
    assert [c.params["file_id"] for c in fake.sent(method="getFile")] == [upload["document"]["file_id"]]
    assert fake.sent(method="download")

    assert "7 million euros" in ask(fake, ADMIN, BUDGET)
    assert "revoked the American visa" in ask(fake, ADMIN + 100, "who revoked Bensouda's visa?")  # still answers
    listing = ask(fake, ADMIN, "/docs")
    assert "dw-icc-sanctions.txt: 11 passages" in listing and "(configured)" in listing
    assert "notes.md: 2 passages" in listing

    command = fake.push_text(ADMIN, "/remove notes.md")
    assert texts(fake, command, 1) == ["Remove notes.md (2 passages)?"]
    prompt = fake.replies_to(command)[0]
    choices = {b["text"]: b["callback_data"] for row in prompt.params["reply_markup"]["inline_keyboard"] for b in row}
    fake.push_callback(prompt.result, choices["Remove"], user_id=ADMIN)
    assert texts(fake, prompt.result, 1) == ["Removed notes.md."]
    assert "7 million" not in ask(fake, ADMIN, BUDGET)
    assert "notes.md" not in ask(fake, ADMIN, "/docs")


def test_a_non_admin_upload_is_refused_without_downloading(fake, bot):
    getfile_before = len(fake.sent(method="getFile"))
    upload = fake.push_document(USER, "mine.md", NOTES)
    (reply,) = texts(fake, upload, 1)
    assert reply.startswith("Sorry, only the bot's admins can add documents")
    assert len(fake.sent(method="getFile")) == getfile_before
    assert "only the bot's admins" in ask(fake, USER, "/remove dw-icc-sanctions.txt")


def test_removing_an_unknown_document_names_the_documents_without_server_paths(fake, bot):
    reply = ask(fake, ADMIN, "/remove nothing.pdf")
    assert (
        reply.startswith("I have no single document called nothing.pdf; I have: ") and "dw-icc-sanctions.txt" in reply
    )
    assert "/" not in reply.replace("/docs", "")


@pytest.mark.parametrize(
    ("name", "content", "reply"),
    [
        ("broken.md", b"\xff\xfe\xfa not text \x00\x81", "I couldn't add broken.md: "),
        ("empty.txt", b"  \n\n ", "I couldn't add empty.txt: "),
        ("report.pdf", b"%PDF-1.4 truncated", "I couldn't add report.pdf: "),
        ("photo.png", b"\x89PNG\r\n", "I can add PDF, Word (.docx), HTML, Markdown and text files; photo.png is not"),
    ],
)
def test_a_bad_upload_gets_a_clear_reply_and_nothing_is_lost(fake, bot, name, content, reply):
    upload = fake.push_document(ADMIN, name, content)
    answer = texts(fake, upload, 1 if name.endswith(".png") else 2)[-1]
    assert answer.startswith(reply) and "Traceback" not in answer
    assert f"{name}: {name}" not in answer and "/" not in answer.split(":", 1)[-1]  # no repeated name, no paths
    assert "revoked the American visa" in ask(fake, ADMIN, "who revoked Bensouda's visa?")


def test_an_uploaded_pdf_is_answered_with_its_page(fake, bot, tmp_path):
    pages = [
        ["The orchard report covers three seasons of growth."],
        ["The east orchard lost forty apple trees to frost in April."],
        ["Next year the cooperative will plant pear trees instead."],
    ]
    pdf = make_pdf(tmp_path / "orchard.pdf", pages)
    upload = fake.push_document(ADMIN, "orchard.pdf", pdf.read_bytes())
    reading, added = texts(fake, upload, 2)
    assert reading == "Reading orchard.pdf…" and added.startswith("Added orchard.pdf:") and "3 pages" in added
    answer = ask(fake, ADMIN, "How many apple trees did the east orchard lose to frost?")
    assert "forty apple trees" in answer and "orchard.pdf, p. 2" in answer
    assert "revoked the American visa" in ask(fake, ADMIN, "who revoked Bensouda's visa?")


def test_questions_are_answered_from_the_previous_index_while_an_upload_is_indexed(fake, bot):
    """Another chat's question, sent right after a large upload, is answered before the upload is."""
    sentences = [
        f"Warehouse {n} in the northern district stores {n * 7} crates of tinned tomatoes." for n in range(600)
    ]
    upload = fake.push_document(ADMIN, "inventory.txt", "\n\n".join(sentences).encode())
    texts(fake, upload, 1)  # "Reading inventory.txt…": the download and indexing have started
    question = fake.push_text(ADMIN + 200, "who revoked Bensouda's visa?")
    (answer,) = texts(fake, question, 1)
    assert "revoked the American visa" in answer
    assert len(fake.replies_to(upload)) == 1, "the question waited for the upload"
    assert texts(fake, upload, 2)[1].startswith("Added inventory.txt: 600 passages")


def test_an_upload_and_a_removal_reuse_the_engines_embedding_model(article, tmp_path, onnx_dir):
    """One model in memory: the engine after an upload (and after a removal) embeds with the same one."""
    from rag.bot.uploads import add_upload, remove_upload, uploads_dir
    from tests.conftest import engine_on

    engine = engine_on(article, tmp_path / "index", onnx_dir)
    staged = uploads_dir(engine.config) / ".incoming" / "notes.txt"
    staged.parent.mkdir(parents=True)
    staged.write_text("The garden committee meets on Tuesdays in the library.\n", encoding="utf-8")
    added, entry, action = add_upload(engine, staged)
    assert action == "Added" and added.retriever.embed_model is engine.retriever.embed_model
    assert [d.path.name for d in added.documents] == [article.name, "notes.txt"]
    removed = remove_upload(added, entry["source"])
    assert removed.retriever.embed_model is engine.retriever.embed_model and len(removed.documents) == 1
