"""Documents sent to the bot by its admins: downloaded, added to the index incrementally, listed, removed.

An admin (``telegram.admin_user_ids``) sends a document (PDF, DOCX, HTML, Markdown or text) in a
private chat: the bot replies "Reading NAME…", downloads it (getFile, then the file URL) into
``<index_dir>/uploads/``, adds it with `rag.store.add_documents` (only its passages are embedded)
and then swaps in an engine over the new index; until then questions are answered from the
previous one. Uploads are processed one at a time. Anyone admitted may list the documents with
/docs; admins remove an added one with /remove NAME and a confirmation button. Other users' files
get one polite refusal and are never downloaded.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from rag.bot.handlers import BotState, admitted, incoming, not_text, send, state
from rag.bot.render import escape_html
from rag.cli import count
from rag.config import Config, TelegramConfig, environment
from rag.engine import Engine
from rag.errors import DocumentError
from rag.ingest import SUPPORTED_SUFFIXES, read_document

UPLOAD_SUFFIXES = tuple(sorted(suffix for suffix in SUPPORTED_SUFFIXES if suffix))
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # the Bot API's getFile limit
COMMANDS = {"docs": "the documents I answer from", "remove": "remove an added document (admins)"}
UPLOADS = "uploads"


def file_url(config: TelegramConfig) -> str:
    """The Bot API file URL: TELEGRAM_API_FILE_URL, else ``telegram.base_file_url``, else the API
    URL with its last segment under ``file/`` (``https://api.telegram.org/bot`` ->
    ``https://api.telegram.org/file/bot``)."""
    configured = environment("TELEGRAM_API_FILE_URL") or config.base_file_url
    if configured:
        return configured
    head, _, last = config.base_url.rstrip("/").rpartition("/")
    return f"{head}/file/{last}"


def upload_problem(name: str, size: int | None) -> str | None:
    """Why a sent file cannot be added (type or size), or None."""
    if Path(name).suffix.lower() not in UPLOAD_SUFFIXES:
        return f"I can add PDF, Word (.docx), HTML, Markdown and text files; {name} is not one of them."
    if size is not None and size > MAX_DOWNLOAD_BYTES:
        return f"{name} is larger than the {MAX_DOWNLOAD_BYTES // 2**20} MB that bots may download."
    return None


def upload_lock(context: ContextTypes.DEFAULT_TYPE) -> asyncio.Lock:
    """The lock that makes uploads and removals run one at a time."""
    return context.bot_data.setdefault("upload_lock", asyncio.Lock())


def is_admin(st: BotState, user_id: int) -> bool:
    return user_id in st.config.admin_user_ids


async def document_message(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A file sent in a private chat: an admin's document is indexed; anyone else is refused. With no
    admins configured, files get the "text only" reply of other non-text messages."""
    if not state(context).config.admin_user_ids:  # uploads are off: the bot reads text only
        await not_text(update, context)
        return
    if (got := await admitted(update, context)) is None or got.message.document is None:
        return
    st, document = state(context), got.message.document
    if not is_admin(st, got.user.id):
        await send(got.message, ["Sorry, only the bot's admins can add documents. You can ask about mine: /docs"])
        return
    name = Path(document.file_name or "document.txt").name
    problem = upload_problem(name, document.file_size)
    if problem is not None:
        await send(got.message, [escape_html(problem)])
        return
    await send(got.message, [f"Reading {escape_html(name)}…"])
    async with upload_lock(context):
        staged = uploads_dir(st.engine.config) / ".incoming" / name
        staged.parent.mkdir(parents=True, exist_ok=True)
        try:
            await (await context.bot.get_file(document.file_id)).download_to_drive(staged)
            st.engine, entry, action = await asyncio.to_thread(add_upload, st.engine, staged)
        except DocumentError as exc:
            problem = str(exc).replace(f"{staged}: ", "").replace(str(staged), name)  # no server paths in the reply
            await send(
                got.message, [escape_html(f"I couldn't add {name}: {problem}. Nothing already indexed changed.")]
            )
            return
        finally:
            staged.unlink(missing_ok=True)
    pages = f", {entry['pages']} pages" if entry.get("pages") else ""
    await send(
        got.message, [f"{action} {escape_html(name)}: {count(entry['passages'], 'passage')}{pages}. Ask me about it."]
    )


def uploads_dir(config: Config) -> Path:
    """Where uploaded documents are kept (they are read again whenever the index is opened)."""
    return config.index_dir / UPLOADS


def add_upload(engine: Engine, staged: Path) -> tuple[Engine, dict[str, Any], str]:
    """Check the downloaded file, move it into the uploads folder and add it to the index; the new
    engine, its manifest entry and "Added" or "Updated". A bad file changes nothing."""
    from rag.store import add_documents

    config = engine.config
    target = (uploads_dir(config) / staged.name).resolve()
    document = read_document(staged, config.chunking.drop_boilerplate)
    for other in engine.documents:
        if other.sha256 == document.sha256 and other.path.resolve() != target:
            raise DocumentError(f"it has the same content as {other.path.name}, which I already have")
    os.replace(staged, target)
    embedding = engine.retriever.embed_model  # the engine's model: no second copy in memory
    with embedding.lock:  # embedding the new passages: not beside a question's embedding
        result = add_documents(config, [target], embedding.model)
    entry = next(e for e in result.stored.manifest["documents"] if e["source"] == str(target))
    action = "Updated" if result.actions[0][1] == "updated" else "Added"
    return Engine.open(config, embedding=embedding), entry, action


async def docs(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/docs: the indexed documents, with passages, pages and when each was added."""
    if (got := await admitted(update, context)) is None:
        return
    lines = ["<b>Documents</b>"]
    for entry in state(context).engine.stored.manifest["documents"]:
        pages = f", {entry['pages']} pages" if entry.get("pages") else ""
        origin = "" if entry["origin"] == "added" else " (configured)"
        added = entry["added"][:16].replace("T", " ")
        name = escape_html(Path(entry["source"]).name)
        lines.append(f"• {name}: {entry['passages']} passages{pages}, added {added} UTC{origin}")
    await send(got.message, ["\n".join(lines)])


async def remove(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/remove NAME (admins): ask for confirmation with a button."""
    from rag.store import find_document

    if (got := await admitted(update, context)) is None:
        return
    st = state(context)
    if not is_admin(st, got.user.id):
        await send(got.message, ["Sorry, only the bot's admins can remove documents."])
        return
    if not context.args:
        await send(got.message, ["Usage: /remove followed by the document's name, e.g. /remove notes.md (see /docs)"])
        return
    wanted = " ".join(context.args)
    try:
        entry = find_document(st.engine.stored.manifest, wanted)
    except DocumentError:  # its message lists server paths: the chat gets names only
        names = ", ".join(sorted(Path(e["source"]).name for e in st.engine.stored.manifest["documents"]))
        await send(
            got.message, [escape_html(f"I have no single document called {wanted}; I have: {names}. See /docs.")]
        )
        return
    name = escape_html(Path(entry["source"]).name)
    if entry["origin"] != "added":
        await send(got.message, [f"{name} is in my configuration; it can only be removed there."])
        return
    key = entry["sha256"][:16]
    buttons = [
        [InlineKeyboardButton("Remove", callback_data=f"rm:{key}"), InlineKeyboardButton("Keep", callback_data="rm:")]
    ]
    prompt = f"Remove {name} ({entry['passages']} passages)?"
    await send(got.message, [prompt], InlineKeyboardMarkup(buttons))


async def remove_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The confirmation button of /remove."""
    query = update.callback_query
    got = incoming(update)
    if query is None or got is None:
        return
    st = state(context)
    if not is_admin(st, got.user.id):
        await query.answer("Only the bot's admins can remove documents.")
        return
    key = (query.data or "").partition(":")[2]
    entries = st.engine.stored.manifest["documents"]
    entry = next((e for e in entries if key and e["sha256"].startswith(key) and e["origin"] == "added"), None)
    if entry is None:
        await query.answer("Kept." if not key else "This document is no longer indexed.")
        return
    await query.answer()
    async with upload_lock(context):
        st.engine = await asyncio.to_thread(remove_upload, st.engine, entry["source"])
    await send(got.message, [f"Removed {escape_html(Path(entry['source']).name)}."])


def remove_upload(engine: Engine, source: str) -> Engine:
    """Remove a document from the index (and its file, when it was uploaded); the new engine."""
    from rag.store import remove_document

    config = engine.config
    embedding = engine.retriever.embed_model
    remove_document(config, source, embedding.model)  # re-embeds nothing
    path = Path(source)
    if path.parent == uploads_dir(config).resolve():
        path.unlink(missing_ok=True)
    return Engine.open(config, embedding=embedding)
