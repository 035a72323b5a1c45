"""Where the bot meets the network and the log: retried requests, per-chat ordering, token redaction.

- `RetryingRequest` retries a Bot API call that failed on a dropped or refused connection or a
  5xx answer, with exponential back-off. A timed-out call is not retried (Telegram may already
  have delivered it), nor is getUpdates (the polling loop retries it itself). 429 "retry after"
  answers are handled by python-telegram-bot's `AIORateLimiter`.
- `PerChatUpdateProcessor` processes updates of different chats concurrently but the updates of
  one chat one after another, in the order they arrived.
- `RedactToken` removes the bot token from every log record, tracebacks included.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from telegram import Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, NetworkError, TimedOut
from telegram.ext import BaseUpdateProcessor
from telegram.request import HTTPXRequest, RequestData

if TYPE_CHECKING:
    from telegram._utils.types import ODVInput  # the timeout type of `do_request`; only exported privately

logger = logging.getLogger(__name__)
RETRIED_STATUS = {500, 502, 503, 504}


async def html_or_plain(send: Callable[..., Awaitable[object]], html: str, **kwargs: Any) -> None:
    """`send(html, parse_mode=HTML, **kwargs)`; if Telegram rejects the markup ("can't parse
    entities"), the same text again as plain text, so the reader still gets it."""
    from rag.bot.render import plain_text

    try:
        await send(html, parse_mode=ParseMode.HTML, **kwargs)
    except BadRequest as exc:
        if "can't parse entities" not in str(exc).lower():
            raise
        logger.warning("Telegram rejected the HTML of a message (%s); sending it as plain text", exc)
        await send(plain_text(html), **kwargs)


class RetryingRequest(HTTPXRequest):
    """An `HTTPXRequest` that retries transient failures `retries` times."""

    def __init__(self, retries: int = 3, backoff_s: float = 0.5, **kwargs: Any):
        super().__init__(**kwargs)
        self.retries = retries
        self.backoff_s = backoff_s

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = HTTPXRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = HTTPXRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = HTTPXRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = HTTPXRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """`HTTPXRequest.do_request`, retried on connection failures and 5xx answers (not timeouts)."""
        timeouts = (read_timeout, write_timeout, connect_timeout, pool_timeout)
        endpoint = url.rsplit("/", 1)[-1]  # never log the URL: it contains the token
        retriable = endpoint != "getUpdates"
        for attempt in range(self.retries + 1):
            last = attempt == self.retries or not retriable
            try:
                status, payload = await super().do_request(url, method, request_data, *timeouts)
            except TimedOut:
                raise
            except NetworkError as exc:
                if last:
                    raise
                logger.debug("%s failed (%s); retrying", endpoint, exc)  # a final failure is raised and logged
            else:
                if status not in RETRIED_STATUS or last:
                    return status, payload
                logger.debug("%s answered HTTP %s; retrying", endpoint, status)
            await asyncio.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")


class PerChatUpdateProcessor(BaseUpdateProcessor):
    """Concurrent across chats, in order within a chat."""

    def __init__(self, max_concurrent_updates: int = 256):
        super().__init__(max_concurrent_updates)
        self.locks: dict[int, asyncio.Lock] = {}
        self.waiting: dict[int, int] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        chat = update.effective_chat if isinstance(update, Update) else None
        if chat is None:
            await coroutine
            return
        lock = self.locks.setdefault(chat.id, asyncio.Lock())
        self.waiting[chat.id] = self.waiting.get(chat.id, 0) + 1
        try:
            async with lock:
                await coroutine
        finally:
            self.waiting[chat.id] -= 1
            if not self.waiting[chat.id]:  # forget idle chats so the maps stay small
                del self.waiting[chat.id], self.locks[chat.id]

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to tear down."""


class RedactToken(logging.Filter):
    """Replaces the bot token and other `secrets` (the webhook's secret token) in log records
    (message, arguments and traceback) with "[token]"."""

    def __init__(self, token: str, *secrets: str):
        super().__init__()
        self.secrets = [s for s in (token, *secrets) if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self._redacted(record.exc_text)
        record.msg, record.args = self._redacted(message), ()
        return True

    def _redacted(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[token]")
        return text
