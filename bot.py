"""Telegram front end: answers questions about the document in Telegram chats.

Thin by design: it builds the python-telegram-bot Application, loads the engine once in
`post_init` (into `bot_data`), wires handlers to it and polls. The token comes only from the
TELEGRAM_BOT_TOKEN environment variable; TELEGRAM_API_BASE_URL points the bot at another Bot API
server (a local one, or a test server). Engine work runs in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from telegram import Update
from telegram.constants import ChatAction, ParseMode
from telegram.ext import Application, CommandHandler, ContextTypes, MessageHandler, filters

from rag import render
from rag.config import load_config
from rag.errors import QuestionError, RagError

logger = logging.getLogger("bot")
HELP = (
    "Ask me a question about the document and I'll answer with a quote from it and numbered sources.\n\n"
    "/sources – the full quoted passages of my last answer\n/reset – forget our conversation\n/help – this message"
)


async def post_init(application: Application) -> None:
    """Load the engine once, before polling starts."""
    from rag.engine import Engine

    config = load_config()
    application.bot_data["engine"] = await asyncio.to_thread(Engine.open, config, False, logger.info)
    application.bot_data["sessions"] = {}


def session_for(context: ContextTypes.DEFAULT_TYPE, chat_id: int):
    """This chat's conversation (created on first use)."""
    sessions = context.bot_data["sessions"]
    if chat_id not in sessions:
        sessions[chat_id] = context.bot_data["engine"].new_session()
    return sessions[chat_id]


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Greet and explain what the bot knows."""
    titles = ", ".join(d.title for d in context.bot_data["engine"].documents)
    await update.effective_message.reply_text(f"I answer questions about: {titles}.\n\n{HELP}")


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Show the commands."""
    await update.effective_message.reply_text(HELP)


async def reset(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Forget this chat's conversation."""
    session_for(context, update.effective_chat.id).reset()
    await update.effective_message.reply_text("Conversation cleared.")


async def sources(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Send the full passages of the last answer in this chat."""
    text = render.sources(session_for(context, update.effective_chat.id).last_answer)
    for chunk in render.split_messages(text.split("\n\n")):
        await update.effective_message.reply_text(chunk)


async def question(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Answer a text message as a question about the document."""
    message = update.effective_message
    await context.bot.send_chat_action(update.effective_chat.id, ChatAction.TYPING)
    engine = context.bot_data["engine"]
    try:
        answer = await asyncio.to_thread(engine.ask, message.text, session_for(context, update.effective_chat.id))
    except QuestionError as exc:
        await message.reply_text(str(exc))
        return
    for chunk in render.telegram_html(answer):
        await message.reply_text(chunk, parse_mode=ParseMode.HTML)


async def not_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Explain that only text questions are understood."""
    await update.effective_message.reply_text("I can only answer text questions about the document.")


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log the exception and tell the user something went wrong."""
    logger.error("error while handling an update", exc_info=context.error)
    if isinstance(update, Update) and update.effective_message:
        await update.effective_message.reply_text("Sorry, something went wrong while answering. Please try again.")


def build_application(token: str) -> Application:
    base_url = os.environ.get("TELEGRAM_API_BASE_URL", "https://api.telegram.org/bot")
    application = Application.builder().token(token).base_url(base_url).post_init(post_init).build()
    application.add_handler(CommandHandler("start", start))
    application.add_handler(CommandHandler("help", help_command))
    application.add_handler(CommandHandler("reset", reset))
    application.add_handler(CommandHandler("sources", sources))
    application.add_handler(MessageHandler(filters.UpdateType.MESSAGE & filters.TEXT & ~filters.COMMAND, question))
    application.add_handler(MessageHandler(filters.UpdateType.MESSAGE & ~filters.TEXT, not_text))
    application.add_error_handler(on_error)
    return application


def main() -> int:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # httpx logs URLs, and the URL holds the token
    token = os.environ.get("TELEGRAM_BOT_TOKEN", "").strip()
    if not token:
        print("error: set TELEGRAM_BOT_TOKEN to the token @BotFather gave you", file=sys.stderr)
        return 1
    try:
        build_application(token).run_polling(allowed_updates=Update.ALL_TYPES)
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
