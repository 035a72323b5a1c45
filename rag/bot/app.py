"""Build and run the Telegram Application: configuration, transport, handlers, start-up checks."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys

from telegram import BotCommand, Update
from telegram.error import InvalidToken, NetworkError
from telegram.ext import AIORateLimiter, Application, CallbackQueryHandler, CommandHandler, MessageHandler, filters

from rag.bot import handlers, uploads
from rag.bot.transport import PerChatUpdateProcessor, RedactToken, RetryingRequest
from rag.bot.webhook import SECRET_TOKEN, serve
from rag.config import Config, environment, load_config
from rag.database import database_url
from rag.errors import RagError, StoreUnavailableError
from rag.ingest import fingerprint

logger = logging.getLogger("rag.bot")
TEMPORARY_FAILURE = 75  # EX_TEMPFAIL: exit status when the document store is unavailable at start
NEW_MESSAGES = filters.UpdateType.MESSAGE  # edited messages and channel posts are ignored


async def post_init(application: Application) -> None:
    """Load the engine once (in a thread), then register the command menu."""
    from rag.engine import Engine

    config: Config = application.bot_data["config"]
    engine = await asyncio.to_thread(Engine.open, config, False, logger.info)
    application.bot_data["state"] = handlers.BotState.create(engine, config.telegram)
    commands = {**handlers.COMMANDS, **uploads.COMMANDS}
    await application.bot.set_my_commands([BotCommand(name, text) for name, text in commands.items()])
    logger.info(
        "Ready: answering questions about %s as @%s",
        ", ".join(d.title for d in engine.documents),
        application.bot.username,
    )


def build_application(config: Config, token: str) -> Application:
    """The Application with its transport, limits and handlers; nothing runs until polling or
    the webhook server starts."""
    tg = config.telegram
    application = (
        Application.builder()
        .token(token)
        .base_url(tg.base_url)
        .base_file_url(uploads.file_url(tg))
        .request(RetryingRequest(retries=tg.send_retries, connection_pool_size=64))
        .get_updates_request(RetryingRequest(retries=0))
        .rate_limiter(
            AIORateLimiter(
                overall_max_rate=tg.messages_per_second,
                group_max_rate=tg.group_messages_per_minute,
                max_retries=tg.send_retries,
            )
        )
        .concurrent_updates(PerChatUpdateProcessor(256))
        .post_init(post_init)
        .build()
    )
    application.bot_data["config"] = config
    commands = {
        "start": handlers.start,
        "help": handlers.start,
        "about": handlers.about,
        "reset": handlers.reset,
        "sources": handlers.sources,
        "ask": handlers.ask,
        "docs": uploads.docs,
        "remove": uploads.remove,
    }
    for name, callback in commands.items():
        application.add_handler(CommandHandler(name, callback, filters=NEW_MESSAGES))
    private = filters.ChatType.PRIVATE & NEW_MESSAGES
    application.add_handler(MessageHandler(NEW_MESSAGES & filters.TEXT & ~filters.COMMAND, handlers.text_message))
    application.add_handler(MessageHandler(private & filters.COMMAND, handlers.unknown_command))
    application.add_handler(MessageHandler(private & filters.Document.ALL, uploads.document_message))
    application.add_handler(MessageHandler(private & ~filters.TEXT & ~filters.StatusUpdate.ALL, handlers.not_text))
    application.add_handler(CallbackQueryHandler(uploads.remove_button, pattern=r"^rm:"))
    application.add_handler(CallbackQueryHandler(handlers.button))
    application.add_error_handler(handlers.on_error)
    return application


def configure_logging(token: str, *secrets: str) -> None:
    """Log to stderr at LOG_LEVEL (default INFO); httpx stays at WARNING; the token and `secrets`
    are redacted."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=(environment("LOG_LEVEL") or "INFO").upper()
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # httpx logs request URLs, which hold the token
    # faiss.loader logs "Could not load library with AVX512 support": harmless
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactToken(token, *secrets))
        handler.addFilter(NoStartupTraceback())


class NoStartupTraceback(logging.Filter):
    """Drops python-telegram-bot's traceback of a failed start-up (an unreachable API or a bad
    token): `main` reports that failure in one line of its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.name.startswith("telegram.ext") and str(record.msg).startswith("Network Retry Loop (Bootstrap")
        )


def main(argv: list[str] | None = None) -> int:
    from rag.cli import common_options

    parser = argparse.ArgumentParser(
        prog="bot.py", parents=[common_options()], description="The Telegram bot (token in TELEGRAM_BOT_TOKEN)."
    )
    args = parser.parse_args(argv)  # an unknown option is an error, not silently ignored
    token = environment("TELEGRAM_BOT_TOKEN")
    if not token:
        print("error: set TELEGRAM_BOT_TOKEN to the token @BotFather gave you", file=sys.stderr)
        return 1
    secret = environment("TELEGRAM_WEBHOOK_SECRET")
    configure_logging(token, secret)
    try:
        config = load_config(args.config, doc=args.doc, index_dir=args.index_dir)
        for path in config.documents:  # a missing or unreadable file fails before any network traffic;
            fingerprint(path)  # its text is extracted only if the index must be built (`post_init`)
        if config.store.backend == "postgres":
            database_url()  # so does a missing DATABASE_URL
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    webhook = config.telegram.mode == "webhook"
    if webhook and not re.fullmatch(SECRET_TOKEN, secret):
        print(
            "error: webhook mode needs TELEGRAM_WEBHOOK_SECRET: 1 to 256 characters, letters, digits, _ and -",
            file=sys.stderr,
        )
        return 1
    try:
        application = build_application(config, token)
        if webhook:
            asyncio.run(serve(application, config.telegram, secret))
        else:
            application.run_polling(allowed_updates=Update.ALL_TYPES, drop_pending_updates=False)
    except InvalidToken:
        print("error: Telegram rejected the bot token; check TELEGRAM_BOT_TOKEN", file=sys.stderr)
        return 1
    except NetworkError as exc:
        print(f"error: cannot reach the Telegram Bot API at {config.telegram.base_url} ({exc})", file=sys.stderr)
        return 1
    except StoreUnavailableError as exc:  # the database is down: a restart later may well work
        print(f"error: {exc}", file=sys.stderr)
        return TEMPORARY_FAILURE
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
