"""Telegram handlers: tiny async functions that check access and limits, then call the engine.

Shared objects live in ``application.bot_data["state"]`` (a `BotState`), loaded in `post_init`.
Engine calls run in a thread so the event loop keeps serving other chats.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from telegram import Chat, InlineKeyboardButton, InlineKeyboardMarkup, Message, ReplyParameters, Update, User
from telegram.constants import ChatAction, ChatType
from telegram.error import Conflict, NetworkError, TelegramError
from telegram.ext import ContextTypes

from rag.bot import render
from rag.bot.drafts import DraftEditor
from rag.bot.shared import SharedArchive, SharedConversations, SharedRateLimiter, SharedUpdates, create_tables
from rag.bot.state import AnswerArchive, BoundedStore, Conversations, RateLimiter
from rag.bot.transport import html_or_plain
from rag.config import TelegramConfig
from rag.database import Database, Session, database_url
from rag.engine import Engine, check_question
from rag.errors import PublishedIndexMismatchError, QuestionError, StoreUnavailableError
from rag.render import snippet

logger = logging.getLogger(__name__)
T = TypeVar("T")
DATABASE_THREADS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rag-db")  # calls share one connection

COMMANDS = {
    "start": "what I know and how to ask",
    "help": "how to ask, and example questions",
    "ask": "ask a question (needed in groups: /ask your question)",
    "sources": "the full quoted passages of my last answer",
    "reset": "forget our conversation",
    "about": "the document, model and index",
}


@dataclass
class BotState:
    """The engine and the chat state: in this process, or with `store.backend: postgres` in the
    database, shared by the replicas (`rag.bot.shared`; its calls block, so handlers make them in
    a worker thread)."""

    engine: Engine
    config: TelegramConfig
    conversations: Conversations | SharedConversations
    limiter: RateLimiter | SharedRateLimiter
    archive: AnswerArchive | SharedArchive = field(default_factory=AnswerArchive)
    refused: BoundedStore[bool] = field(default_factory=lambda: BoundedStore(100_000))
    updates: SharedUpdates | None = None  # the updates answered by any replica (webhook mode, postgres)
    _reopening: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    _refused_generation: int | None = field(default=None, repr=False)  # one this replica's config does not fit

    @classmethod
    def create(cls, engine: Engine, config: TelegramConfig) -> BotState:
        idle = config.session_idle_minutes * 60
        if engine.config.store.backend == "postgres":
            database = Database(database_url())
            create_tables(database)
            return cls(
                engine,
                config,
                SharedConversations(database, engine.new_session, idle),
                SharedRateLimiter(database, config.questions_per_minute),
                SharedArchive(database),
                updates=SharedUpdates(Session(database.url)),  # its locks live on one connection of its own
            )
        return cls(
            engine,
            config,
            Conversations(engine.new_session, idle, config.max_chats),
            RateLimiter(config.questions_per_minute),
        )

    async def follow_published_index(self) -> None:
        """With the PostgreSQL store: reopen the engine when `rag index` has published a newer
        generation than the one it answers from (one query per question; reopening copies the
        new generation's files, in a worker thread, once for all the questions waiting)."""
        if not isinstance(self.conversations, SharedConversations):
            return
        from rag.engine import Engine
        from rag.pgstore import current_generation

        async with self._reopening:
            latest = await self.call(current_generation, self.conversations.database)
            known = self.engine.stored.manifest.get("published_generation")
            if latest is None or latest in (known, self._refused_generation):
                return
            logger.info("Index generation %s was published; switching to it", latest)
            try:
                embedding = self.engine.retriever.embed_model  # the same model, not a second copy
                self.engine = await asyncio.to_thread(Engine.open, self.engine.config, False, logger.info, embedding)
            except PublishedIndexMismatchError as exc:  # other documents than this replica's config: keep answering
                logger.warning("Not switching to index generation %s: %s", latest, exc)
                self._refused_generation = latest

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """A call on the chat state: when the state is in the database (the call blocks), in a
        thread of its own pool, so it never queues behind answers being computed in the default
        one; else here, on the event loop (the in-memory state is not thread-safe)."""
        if isinstance(self.conversations, SharedConversations):
            return await asyncio.get_running_loop().run_in_executor(
                DATABASE_THREADS, functools.partial(function, *args)
            )
        return function(*args)


def state(context: ContextTypes.DEFAULT_TYPE) -> BotState:
    """The bot's shared objects, loaded in `post_init`."""
    return context.bot_data["state"]


@dataclass(frozen=True)
class Incoming:
    """What the handlers need from an update: the message to reply to, its chat and its sender."""

    message: Message
    chat: Chat
    user: User


def incoming(update: Update) -> Incoming | None:
    """The message, chat and sender of `update`, or None (logged at DEBUG) when one is missing.

    New messages and callback queries on an accessible message, all the handlers receive, have
    all three; anything else is ignored."""
    message, chat, user = update.effective_message, update.effective_chat, update.effective_user
    if message is None or chat is None or user is None:
        logger.debug("ignoring update %s: no message, chat or sender", update.update_id)
        return None
    return Incoming(message, chat, user)


async def admitted(update: Update, context: ContextTypes.DEFAULT_TYPE) -> Incoming | None:
    """`incoming(update)` when the sender may use the bot; None when refused (`refused` replied)."""
    if await refused(update, context):
        return None
    return incoming(update)


# ---- commands -------------------------------------------------------------------------------


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Say what the bot knows and offer example questions."""
    if (got := await admitted(update, context)) is None:
        return
    st = state(context)
    titles = ", ".join(render.escape_html(d.title) for d in st.engine.documents)
    text = (
        f"I answer questions about <b>{titles}</b>: <i>{render.escape_html(snippet(st.engine.summary, 200))}</i>\n\n"
        "Send me a question and I'll reply with a quote from the text and numbered sources. "
        "In a group, mention me, reply to me or use /ask.\n\n"
        + "\n".join(f"/{name} – {what}" for name, what in COMMANDS.items())
    )
    examples = [[InlineKeyboardButton(q, callback_data=f"ask:{i}")] for i, q in enumerate(st.config.example_questions)]
    await send(got.message, [text], InlineKeyboardMarkup(examples) if examples else None)


async def about(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Show the document, model and index facts."""
    if (got := await admitted(update, context)) is None:
        return
    facts = state(context).engine.about()
    lines = [f"<b>Documents:</b> {render.escape_html('; '.join(facts['documents']))}"]
    lines += [
        f"<b>{key.capitalize()}:</b> {render.escape_html(str(facts[key]))}" for key in ("passages", "model", "chunking")
    ]
    await send(got.message, ["\n".join(lines)])


async def reset(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Forget this chat's conversation."""
    if (got := await admitted(update, context)) is None:
        return
    await state(context).call(state(context).conversations.reset, got.chat.id)
    await send(got.message, ["Conversation cleared. Follow-up questions start afresh."])


async def sources(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Re-send the full sources of the chat's last answer."""
    if (got := await admitted(update, context)) is None:
        return
    session = await state(context).call(state(context).conversations.session, got.chat.id)
    await send(got.message, render.sources_html(session.last_answer, state(context).config.message_chars))


async def ask(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/ask QUESTION: answer a question (the way to ask in groups)."""
    if (got := await admitted(update, context)) is None:
        return
    if not context.args:
        await send(got.message, ["Usage: /ask followed by your question, e.g. /ask Who revoked the visa?"])
        return
    await answer_question(got, context, " ".join(context.args))


async def unknown_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Point to /help for a command the bot does not know."""
    if (got := incoming(update)) is None:
        return
    command = render.escape_html((got.message.text or "").split()[0])
    await send(got.message, [f"I don't know the command {command}. Try /help."])


# ---- messages and buttons -------------------------------------------------------------------


async def text_message(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A text message: in private chats always a question; in groups only when addressed to the bot."""
    if (got := incoming(update)) is None:
        return
    question = addressed_question(got.message, context)
    if question is None or await refused(update, context):
        return
    await answer_question(got, context, question)


async def not_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Photos, stickers, voice, files, locations...: explain what the bot reads."""
    if (got := await admitted(update, context)) is None:
        return
    await send(got.message, ["I can only read text. Please type your question about the document."])


async def button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Inline buttons: example questions, "Sources" and "More context"."""
    query = update.callback_query
    if query is None:
        return
    if await refused(update, context):
        await query.answer("Sorry, this bot is private.")
        return
    kind, _, key = (query.data or "").partition(":")
    st = state(context)
    got = incoming(update)  # None when the button's message is no longer accessible to the bot
    if got is not None and kind == "ask" and key.isdigit() and int(key) < len(st.config.example_questions):
        await query.answer()
        await answer_question(got, context, st.config.example_questions[int(key)], show_question=True)
        return
    answer = await st.call(st.archive.get, got.chat.id, key) if got is not None and kind in ("src", "ctx") else None
    if got is None or answer is None:
        await query.answer("This button has expired. Please ask the question again.")
        return
    await query.answer()
    if kind == "src":
        await send(got.message, render.sources_html(answer, st.config.message_chars))
    else:
        paragraphs = st.engine.paragraphs_around(answer.citations[0])
        text = "\n\n".join(
            f"¶{number}{' (cited)' if number == answer.citations[0].paragraph else ''}: {body}"
            for number, body in paragraphs
        )
        await send_plain(got.message, text or "No surrounding text found.", st.config.message_chars)


async def answer_question(
    got: Incoming, context: ContextTypes.DEFAULT_TYPE, question: str, show_question: bool = False
) -> None:
    """Check the question and the sender's rate, answer in a thread, reply with buttons."""
    st = state(context)
    message = got.message
    try:
        question = check_question(question, st.engine.config.answer.max_question_chars)
    except QuestionError as exc:
        await send(message, [render.escape_html(str(exc))])
        return
    if not await st.call(st.limiter.allow, got.user.id):
        rate = st.config.questions_per_minute
        await send(
            message,
            [f"You're asking faster than I can keep up with ({rate} questions a minute). Please wait a moment."],
        )
        return
    await typing(got.chat.id, context)
    drafts = (
        await DraftEditor.start(message, st.config.message_chars) if st.engine.config.llm.provider != "none" else None
    )
    await st.follow_published_index()
    session = await st.call(st.conversations.session, got.chat.id)
    answer = await asyncio.to_thread(st.engine.ask, question, session, drafts.push if drafts else None)
    try:
        await st.call(st.conversations.save, got.chat.id, session)
        key: str | None = await st.call(st.archive.add, got.chat.id, answer)
    except StoreUnavailableError as exc:  # the answer is there: send it, without its buttons
        logger.warning("Chat %s: the answer was sent but not kept: %s", got.chat.id, exc)
        key = None
    markup = None
    if answer.citations and not answer.abstained and key is not None:
        markup = InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton("Sources", callback_data=f"src:{key}"),
                    InlineKeyboardButton("More context", callback_data=f"ctx:{key}"),
                ]
            ]
        )
    chunks = render.telegram_html(answer, st.config.message_chars, question if show_question else None)
    if drafts is not None:
        chunks = await drafts.finish(chunks, markup)
    await send(message, chunks, markup)


def addressed_question(message: Message, context: ContextTypes.DEFAULT_TYPE) -> str | None:
    """The question in `message`, or None when a group message is not meant for the bot."""
    text = message.text or ""
    if message.chat.type == ChatType.PRIVATE:
        return text
    mention = re.compile(rf"@{re.escape(context.bot.username or '')}\b", re.I)
    if context.bot.username and mention.search(text):
        return mention.sub(" ", text)
    replied = message.reply_to_message
    if replied is not None and replied.from_user is not None and replied.from_user.id == context.bot.id:
        return text
    return None


async def refused(update: Update, context: ContextTypes.DEFAULT_TYPE) -> bool:
    """True when the sender or chat is not on the allow-lists; the first time, say so politely."""
    config = state(context).config
    user, chat = update.effective_user, update.effective_chat
    allowed = (not config.allowed_user_ids or (user is not None and user.id in config.allowed_user_ids)) and (
        not config.allowed_chat_ids or (chat is not None and chat.id in config.allowed_chat_ids)
    )
    if allowed:
        return False
    who = user.id if user is not None else chat.id if chat is not None else None
    first_time = who is not None and state(context).refused.get(who) is None
    if first_time and update.effective_message is not None and update.callback_query is None:
        state(context).refused.put(who, True)
        await send(update.effective_message, ["Sorry, this bot is private and can't answer you."])
    else:
        message = update.effective_message.message_id if update.effective_message else None
        logger.info("Ignored message %s from %s: not on the allow-lists (told once already)", message, who)
    return True


# ---- sending --------------------------------------------------------------------------------


async def send(message: Message, chunks: list[str], markup: InlineKeyboardMarkup | None = None) -> None:
    """Reply to `message` with HTML chunks (buttons on the last); plain text if Telegram rejects the markup."""
    for i, chunk in enumerate(chunks):
        kwargs = {
            "reply_markup": markup if i == len(chunks) - 1 else None,
            "reply_parameters": ReplyParameters(message.message_id, allow_sending_without_reply=True),
        }
        await html_or_plain(functools.partial(message.get_bot().send_message, message.chat_id), chunk, **kwargs)


async def send_plain(message: Message, text: str, limit: int) -> None:
    """Send plain text (quoted passages) as HTML-escaped chunks split between paragraphs."""
    await send(message, render.split_messages([render.escape_html(p) for p in text.split("\n\n")], limit))


async def typing(chat_id: int, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Show "typing..." in `chat_id` while the engine works; purely cosmetic, so failures are ignored."""
    try:
        await context.bot.send_chat_action(chat_id, ChatAction.TYPING)
    except TelegramError as exc:
        logger.debug("typing action failed: %s", exc)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log the error with its context and, when there is a chat, apologise."""
    error = context.error
    if isinstance(error, Conflict):
        logger.error(
            "Another bot instance is polling with this token (Telegram says: %s). Stop the other instance.", error
        )
        return
    if update is None and isinstance(error, NetworkError):
        logger.warning("Network problem while polling Telegram: %s (retrying)", error)
        return
    chat = update.effective_chat.id if isinstance(update, Update) and update.effective_chat else None
    if isinstance(error, StoreUnavailableError):  # the PostgreSQL store is down: expected, and said plainly
        logger.warning("Update %s (chat %s): %s", getattr(update, "update_id", None), chat, error)
        apology = "The document store is unavailable right now. Please ask again in a minute."
    else:
        logger.error(
            "Error while handling update %s (chat %s)", getattr(update, "update_id", None), chat, exc_info=error
        )
        apology = "Sorry, something went wrong while answering. Please try again."
    if isinstance(update, Update) and update.effective_message is not None:
        try:
            await update.effective_message.reply_text(apology)
        except TelegramError:
            logger.warning("Could not tell chat %s about the error", chat)
