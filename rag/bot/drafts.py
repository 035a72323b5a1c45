"""A generated answer growing in place: one Telegram message edited at most once per interval.

The engine streams the model's (unverified) reply from its worker thread; `push` schedules an
edit on the event loop unless one is still in flight or the last was too recent (Telegram's
flood limits allow roughly one edit a second). `finish` replaces the draft with the verified
answer, the first chunk in place and any further chunks as new messages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Future

from telegram import InlineKeyboardMarkup, Message
from telegram.constants import ParseMode
from telegram.error import TelegramError

from rag.bot import render
from rag.bot.transport import html_or_plain
from rag.render import snippet

logger = logging.getLogger(__name__)
DRAFT_LABEL = "✍️ <i>drafting, then checking every sentence against the sources…</i>"


class DraftEditor:
    """Edits `placeholder`, the bot's reply to a question, as the generated answer grows."""

    def __init__(self, placeholder: Message, limit: int, interval_s: float = 1.0):
        self.placeholder = placeholder
        self.limit = limit
        self.interval_s = interval_s
        self.loop = asyncio.get_running_loop()
        self.last_edit = 0.0
        self.pending: Future[None] | None = None
        self.edits = 0

    @classmethod
    async def start(cls, question: Message, limit: int, interval_s: float = 1.0) -> DraftEditor:
        """Send the message that drafts will fill, as a reply to the question, and edit it from then on."""
        placeholder = await question.reply_text(DRAFT_LABEL, parse_mode=ParseMode.HTML, do_quote=True)
        return cls(placeholder, limit, interval_s)

    def push(self, text: str) -> None:
        """Called from the engine's thread with the reply so far; edits are throttled."""
        now = time.monotonic()
        if now - self.last_edit < self.interval_s or (self.pending and not self.pending.done()):
            return
        self.last_edit = now
        draft = snippet(text, self.limit - len(DRAFT_LABEL) - 10)
        self.pending = asyncio.run_coroutine_threadsafe(
            self._edit(f"{DRAFT_LABEL}\n\n{render.escape_html(draft)}"), self.loop
        )

    async def finish(self, chunks: list[str], markup: InlineKeyboardMarkup | None) -> list[str]:
        """Put the verified answer's first chunk in place of the draft; return the chunks still to send."""
        if self.pending is not None:
            await asyncio.wrap_future(self.pending)
        last = len(chunks) == 1
        await html_or_plain(self.placeholder.edit_text, chunks[0], reply_markup=markup if last else None)
        return chunks[1:]

    async def _edit(self, html: str) -> None:
        try:
            await self.placeholder.edit_text(html, parse_mode=ParseMode.HTML)
            self.edits += 1
        except TelegramError as exc:  # a draft is cosmetic: the final answer replaces it anyway
            logger.debug("draft edit failed: %s", exc)
