"""Webhook mode: Telegram posts each update to `telegram.webhook_url`, and this process serves it.

A small tornado app (tornado is what python-telegram-bot's own webhook mode runs on; that mode
acknowledges an update once it is queued, and has no route for a load balancer's health check)
with two routes:

- the webhook URL's path: a request without Telegram's secret-token header, or with another
  secret, gets 403; a body that is not an update gets 400; an `update_id` taken before is
  acknowledged and dropped (Telegram posts an update again when a request got no 2xx in time),
  once the first delivery has been answered. With `store.backend: postgres` "taken before"
  means by any replica (`rag.bot.shared.SharedUpdates`): a copy posted to another replica while
  the first is still answering waits for it, and one whose replica died is answered anew; and
  one chat's updates are answered one at a time across replicas (its turn, `claim`);
  every other update goes to the same handlers as in polling mode, in order per chat, and is
  acknowledged (200) only once it has been answered: an update whose process dies on the way
  is posted again by Telegram, to this replica or another;
- `/healthz`: 200 once the engine is open, else 503.

`serve` opens the engine (`post_init`), starts the HTTP server, then calls `setWebhook`, which is
idempotent: every replica may call it with the same URL and secret. On SIGTERM or SIGINT it stops
taking requests and finishes the updates in flight before it exits.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import signal
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

import tornado.web
from telegram import Update
from telegram.ext import Application
from tornado.httpserver import HTTPServer

from rag.bot.shared import SharedUpdates
from rag.config import TelegramConfig
from rag.errors import RagError, StoreUnavailableError

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
HEALTH_PATH = "/healthz"
REMEMBERED_UPDATES = 10_000  # update_ids kept to drop a redelivered update
SECRET_TOKEN = r"[A-Za-z0-9_-]{1,256}"  # what Telegram accepts as secret_token
LEDGER_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-updates")
CLAIM_SECONDS = 60.0  # how long a copy waits for another replica's answer before it gets 503
MAX_POLL_SECONDS = 0.5  # longest pause between two looks at a lock another replica holds
T = TypeVar("T")

logger = logging.getLogger("rag.bot")


class RecentIds:
    """The last `size` ids seen, to tell a redelivered update from a new one."""

    def __init__(self, size: int = REMEMBERED_UPDATES):
        self._order: deque[int] = deque()
        self._seen: set[int] = set()
        self._size = size

    def add(self, update_id: int) -> bool:
        """Remember `update_id`; False when it was already remembered."""
        if update_id in self._seen:
            return False
        self._seen.add(update_id)
        self._order.append(update_id)
        if len(self._order) > self._size:
            self._seen.discard(self._order.popleft())
        return True

    def discard(self, update_id: int) -> None:
        """Forget `update_id` (it was not answered after all)."""
        self._seen.discard(update_id)


class InFlight:
    """Counts the requests being answered, so that stopping can wait until there are none."""

    def __init__(self) -> None:
        self.count = 0
        self.idle = asyncio.Event()
        self.idle.set()

    @contextmanager
    def tracked(self) -> Iterator[None]:
        self.count += 1
        self.idle.clear()
        try:
            yield
        finally:
            self.count -= 1
            if not self.count:
                self.idle.set()


async def in_ledger_thread(function: Callable[..., T], *args: Any) -> T:
    """A blocking call of the update ledger, in its own thread (with its own connection): it
    never waits behind answers or chat-state calls, so an answered update is recorded at once."""
    return await asyncio.get_running_loop().run_in_executor(LEDGER_THREAD, functools.partial(function, *args))


async def until_free(function: Callable[[int], T], key: int, busy: T, deadline: float, poll_seconds: float = 0.05) -> T:
    """`function(key)` in the ledger thread, again while it returns `busy` (another replica holds
    `key`), until the `time.monotonic()` `deadline`: then TimeoutError. The pause grows from
    `poll_seconds` to `MAX_POLL_SECONDS`, so long waits keep the ledger thread free for others."""
    while (result := await in_ledger_thread(function, key)) == busy:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{key} is held by another replica")
        await asyncio.sleep(poll_seconds)
        poll_seconds = min(poll_seconds * 1.5, MAX_POLL_SECONDS)
    return result


async def claim(updates: SharedUpdates, update_id: int, chat_id: int | None) -> bool:
    """Whether this replica is to answer `update_id` (False: a replica answered it already).
    While another replica is answering it, waits (Telegram posted it again because that one has
    not acknowledged it yet; this copy is acknowledged once it has been answered). Then takes
    the chat's turn, waiting while another replica answers in that chat, so that each turn reads
    the conversation the one before saved. Waits at most `CLAIM_SECONDS` in all: then TimeoutError."""
    deadline = time.monotonic() + CLAIM_SECONDS
    if await until_free(updates.try_claim, update_id, "busy", deadline) != "claimed":
        return False
    if chat_id is not None:
        try:
            await until_free(functools.partial(updates.try_take_turn, update_id), chat_id, False, deadline)
        except BaseException:
            await settle(updates.release, update_id)
            raise
    return True


async def settle(call: Callable[..., None], update_id: int, *more: Any) -> None:
    """Record in the ledger how `update_id` ended; a database gone or refusing meanwhile is
    logged (this process remembers the update all the same, so a copy posted to it is not
    answered again)."""
    try:
        await in_ledger_thread(call, update_id, *more)
    except RagError as exc:
        logger.warning("Update %s: could not record it in the database: %s", update_id, exc)


class ChatQueues:
    """One queue per chat: this process claims a chat's updates one at a time, in the order they
    arrived, so that they enter the per-chat update processor in that order too."""

    def __init__(self) -> None:
        self._locks: dict[int | None, asyncio.Lock] = {}
        self._waiting: Counter[int | None] = Counter()

    @asynccontextmanager
    async def first_in(self, chat_id: int | None) -> AsyncIterator[None]:
        lock = self._locks.setdefault(chat_id, asyncio.Lock())  # asyncio.Lock wakes its waiters in order
        self._waiting[chat_id] += 1
        try:
            async with lock:
                yield
        finally:
            self._waiting[chat_id] -= 1
            if not self._waiting[chat_id]:
                del self._waiting[chat_id], self._locks[chat_id]


def webhook_path(url: str) -> str:
    """The path of the webhook URL, which this process serves ("/" when it has none)."""
    return urlsplit(url).path or "/"


def webhook_app(application: Application, path: str, secret: str, in_flight: InFlight) -> tornado.web.Application:
    """The tornado app serving the webhook at `path` and the health check, for `application`."""
    recent, queues = RecentIds(), ChatQueues()
    answering: dict[int, asyncio.Event] = {}  # update_id -> set once answered

    class UpdateHandler(tornado.web.RequestHandler):
        async def post(self) -> None:
            if not hmac.compare_digest(self.request.headers.get(SECRET_HEADER, "").encode(), secret.encode()):
                raise tornado.web.HTTPError(403)
            try:
                update = Update.de_json(json.loads(self.request.body), application.bot)
            except (ValueError, TypeError, KeyError, AttributeError):  # not JSON, or not an update
                raise tornado.web.HTTPError(400) from None
            if update.update_id in answering:  # delivered again while being answered: acknowledged once it is
                await answering[update.update_id].wait()
                return
            answered = answering[update.update_id] = asyncio.Event()  # before any await: a copy now waits
            try:
                with in_flight.tracked():  # answered before acknowledged; in order per chat, as in polling
                    await answer_once(update)
            finally:
                answered.set()
                del answering[update.update_id]

    async def answer_once(update: Update) -> None:
        """Answer `update` unless this process or (with the shared store) any replica did."""
        update_id = update.update_id
        if not recent.add(update_id):
            logger.info("Update %s was delivered again; answered once", update_id)
            return
        shared = application.bot_data["state"].updates if "state" in application.bot_data else None
        chat = update.effective_chat.id if update.effective_chat is not None else None
        try:
            async with queues.first_in(chat):
                first = True if shared is None else await claim(shared, update_id, chat)
        except StoreUnavailableError:  # answered all the same: the handlers tell the user the store is down
            first, shared = True, None
        except TimeoutError:  # another replica holds it too long: Telegram will post it again
            recent.discard(update_id)
            raise tornado.web.HTTPError(503) from None
        if not first:
            logger.info("Update %s was answered by another replica", update_id)
            return
        try:
            await application.update_processor.process_update(update, application.process_update(update))
        except BaseException:
            recent.discard(update_id)  # not answered: a copy posted again is answered
            if shared is not None:
                await settle(shared.release, update_id, chat)
            raise
        if shared is not None:
            await settle(shared.answered, update_id, chat)

    class HealthHandler(tornado.web.RequestHandler):
        def get(self) -> None:
            ready = "state" in application.bot_data
            self.set_status(200 if ready else 503)
            self.finish({"ready": ready})

    return tornado.web.Application([(path, UpdateHandler), (HEALTH_PATH, HealthHandler)])


async def serve(application: Application, telegram: TelegramConfig, secret: str) -> None:
    """Run `application` in webhook mode until SIGTERM or SIGINT."""
    assert telegram.webhook_url  # the config requires it in webhook mode
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    path, in_flight = webhook_path(telegram.webhook_url), InFlight()
    server = HTTPServer(webhook_app(application, path, secret, in_flight))
    async with application:  # initialize (getMe: checks the token) and, at the end, shutdown
        if application.post_init:
            await application.post_init(application)
        await application.start()
        server.listen(telegram.port, telegram.listen)
        await application.bot.set_webhook(
            telegram.webhook_url, secret_token=secret, allowed_updates=Update.ALL_TYPES, drop_pending_updates=False
        )
        logger.info("Serving the webhook on %s:%s%s", telegram.listen, telegram.port, path)
        try:
            await stopping.wait()
        finally:
            server.stop()  # no new connections
            await in_flight.idle.wait()
            await server.close_all_connections()  # idle keep-alive ones too
            await in_flight.idle.wait()
            await application.stop()
