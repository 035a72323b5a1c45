"""A local fake Telegram Bot API server for tests: real HTTP on 127.0.0.1, scripted faults.

It implements the methods the bot uses (getMe, getUpdates with offsets and long-poll timeout,
sendMessage, editMessageText, sendChatAction, answerCallbackQuery, setMyCommands, getMyCommands,
setWebhook, deleteWebhook, close, logOut, getFile, and file downloads from ``/file/bot<token>/<file_path>``),
records every request (a download as method "download"), and can fail the next calls of a method
with a 429 "retry after", a 5xx, a dropped connection or a 400 "can't parse entities".
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote

from tests.local_server import LocalServer

BOT_USER = {
    "id": 4242,
    "is_bot": True,
    "first_name": "DocBot",
    "username": "docbot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}
VIA = "via-"  # a base URL path /via-NAME/bot... records the calls as NAME's
RAW_STRING_FIELDS = {"text", "parse_mode", "callback_query_id", "action", "description", "short_description"}


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float
    ok: bool = True
    result: Any = None
    via: str = ""  # which client sent it, when its base URL names one (`FakeTelegram.base_url_for`)


@dataclass
class FakeTelegram(LocalServer):
    token: str = "123456789:AAFakeTokenForTests-abcdefghijklmnop"
    calls: list[Call] = field(default_factory=list)  # every request, failed ones with ok=False
    faults: dict[str, deque] = field(default_factory=lambda: defaultdict(deque))

    def __post_init__(self) -> None:
        self.lock = threading.Condition()
        self.updates: list[dict] = []
        self.update_ids = itertools.count(1)
        self.message_ids = itertools.count(1000)
        self.pushed_at: dict[int, float] = {}  # user message id -> when it was pushed
        self.files: dict[str, bytes] = {}  # file_id -> content, for getFile and downloads
        LocalServer.__init__(self, self._handler_class(), "/bot")

    def base_url_for(self, client: str) -> str:
        """A base URL for one client (one bot replica): its calls are recorded with `via=client`."""
        return self.base_url.replace("/bot", f"/{VIA}{client}/bot", 1)

    @staticmethod
    def split_via(path: str) -> tuple[str, str]:
        """(the client a request path names, the path without it)."""
        if not path.startswith(f"/{VIA}"):
            return "", path
        client, _, rest = path[len(VIA) + 1 :].partition("/")
        return client, f"/{rest}"

    # ---- scripting ----
    def fail_next(self, method: str, kind: str, count: int = 1, retry_after: int = 1) -> None:
        """Fail the next `count` calls of `method`: kind is "429", "502", "drop" or "parse"."""
        with self.lock:
            for _ in range(count):
                self.faults[method].append((kind, retry_after))

    def push(self, update: dict) -> dict:
        with self.lock:
            update = {"update_id": next(self.update_ids), **update}
            self.updates.append(update)
            self.lock.notify_all()
        return update

    def push_text(
        self,
        chat_id: int,
        text: str,
        user_id: int | None = None,
        chat_type: str = "private",
        reply_to: dict | None = None,
        edited: bool = False,
    ) -> dict:
        """A user's text message (or an edit of one); returns the message."""
        message = self.user_message(chat_id, user_id, chat_type, text=text)
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        if edited:
            message["edit_date"] = int(time.time())
        self.push({"edited_message" if edited else "message": message})
        return message

    def user_message(
        self, chat_id: int, user_id: int | None = None, chat_type: str = "private", **content: Any
    ) -> dict:
        message_id = next(self.message_ids)
        self.pushed_at[message_id] = time.monotonic()
        chat = {"id": chat_id, "type": chat_type} | (
            {"title": "Group"} if chat_type != "private" else {"first_name": "U"}
        )
        user = {"id": user_id or abs(chat_id), "is_bot": False, "first_name": "User"}
        message = {"message_id": message_id, "date": int(time.time()), "chat": chat, "from": user, **content}
        text = content.get("text", "")
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return message

    def push_document(
        self, chat_id: int, file_name: str, content: bytes, user_id: int | None = None, mime_type: str = "text/plain"
    ) -> dict:
        """A user's file (a Telegram "document" message); its bytes are served by getFile and download."""
        file_id = f"file{next(self.message_ids)}"
        with self.lock:
            self.files[file_id] = content
        document = {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": len(content),
        }
        message = self.user_message(chat_id, user_id, document=document)
        self.push({"message": message})
        return message

    def download(self, file_path: str) -> bytes | None:
        """The content behind a file path that getFile returned, recorded as a "download" call."""
        with self.lock:
            content = self.files.get(file_path.removeprefix("documents/"))
            self.calls.append(Call("download", {"file_path": file_path}, time.monotonic(), ok=content is not None))
            self.lock.notify_all()
        return content

    def push_callback(self, message: dict, data: str, user_id: int) -> None:
        self.push(self.callback(message, data, user_id))

    def callback(self, message: dict, data: str, user_id: int) -> dict:
        """An update (without its update_id) of `user_id` tapping the button `data` under `message`."""
        user = {"id": user_id, "is_bot": False, "first_name": "User"}
        query = {"id": f"cq{next(self.message_ids)}", "from": user, "chat_instance": "ci", "data": data}
        return {"callback_query": query | {"message": message}}

    # ---- reading ----
    def sent(self, chat_id: int | None = None, method: str = "sendMessage") -> list[Call]:
        with self.lock:
            return [
                c
                for c in self.calls
                if c.ok and c.method == method and (chat_id is None or c.params.get("chat_id") == chat_id)
            ]

    def replies_to(self, message: dict) -> list[Call]:
        """Delivered messages that reply to `message`."""
        return [
            c
            for c in self.sent(message["chat"]["id"])
            if (c.params.get("reply_parameters") or {}).get("message_id") == message["message_id"]
        ]

    def wait_until(self, predicate, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with self.lock:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("the bot did not do what the test waited for in time")
                self.lock.wait(min(remaining, 0.2))

    # ---- the Bot API ----
    def handle(self, method: str, params: dict[str, Any], via: str = "") -> tuple[int, dict] | None:
        """Returns (status, body), or None to drop the connection."""
        with self.lock:
            fault = self.faults[method].popleft() if self.faults.get(method) else None
            if fault and fault[0] == "parse" and params.get("parse_mode") != "HTML":
                self.faults[method].appendleft(fault)  # only HTML can fail to parse
                fault = None
            call = Call(method, params, time.monotonic(), ok=fault is None, via=via)
            self.calls.append(call)
            self.lock.notify_all()
        if fault:
            kind, retry_after = fault
            if kind == "drop":
                return None
            if kind == "429":
                return 429, {
                    "ok": False,
                    "error_code": 429,
                    "description": f"Too Many Requests: retry after {retry_after}",
                    "parameters": {"retry_after": retry_after},
                }
            if kind == "parse":
                return 400, {
                    "ok": False,
                    "error_code": 400,
                    "description": "Bad Request: can't parse entities: unsupported start tag",
                }
            descriptions = {409: "Conflict: terminated by other getUpdates request", 502: "Bad Gateway"}
            return int(kind), {
                "ok": False,
                "error_code": int(kind),
                "description": descriptions.get(int(kind), "Error"),
            }
        if params.get("parse_mode") == "HTML" and not valid_telegram_html(params.get("text", "")):
            with self.lock:
                call.ok = False
            return 400, {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: can't parse entities: invalid markup",
            }
        if len(params.get("text", "")) > 4096:
            with self.lock:
                call.ok = False
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"}
        if method == "getUpdates":
            return 200, {"ok": True, "result": self._updates(params)}
        result = self._result(method, params)
        with self.lock:
            call.result = result
            self.lock.notify_all()
        if result is None:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
        return 200, {"ok": True, "result": result}

    def _updates(self, params: dict[str, Any]) -> list[dict]:
        offset = int(params.get("offset") or 0)
        deadline = time.monotonic() + min(float(params.get("timeout") or 0), 2.0)
        with self.lock:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
            while not self.updates and time.monotonic() < deadline:
                self.lock.wait(deadline - time.monotonic())
            return list(self.updates[: int(params.get("limit") or 100)])

    def _result(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return BOT_USER
        if method in ("sendMessage", "editMessageText"):
            chat_id = params["chat_id"]
            message_id = params.get("message_id") or next(self.message_ids)
            chat = {"id": chat_id, "type": "private" if chat_id > 0 else "group", "title": "Group"}
            return {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": chat,
                "from": BOT_USER,
                "text": params.get("text", ""),
            }
        if method == "getFile":
            content = self.files.get(params.get("file_id", ""))
            if content is None:
                return None
            file_id = params["file_id"]
            return {
                "file_id": file_id,
                "file_unique_id": f"u{file_id}",
                "file_size": len(content),
                "file_path": f"documents/{file_id}",
            }
        if method == "getMyCommands":
            commands = [c for c in self.calls if c.method == "setMyCommands" and c.ok]
            return commands[-1].params.get("commands", []) if commands else []
        if method in (
            "sendChatAction", "answerCallbackQuery", "setMyCommands", "setWebhook", "deleteWebhook", "close", "logOut"
        ):  # fmt: skip
            return True
        return None

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once, without a 40 ms delayed-ACK stall

            def do_POST(self) -> None:  # noqa: N802
                via, self.path = fake.split_via(self.path)
                prefix = f"/bot{fake.token}/"
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                files = f"/file/bot{fake.token}/"
                if unquote(self.path).startswith(files):  # python-telegram-bot quotes the ":" of the token
                    self._send_file(unquote(self.path)[len(files) :])
                    return
                if not self.path.startswith(prefix):
                    self._reply(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
                    return
                params = _params(body, self.headers.get("Content-Type", ""))
                outcome = fake.handle(self.path[len(prefix) :], params, via)
                if outcome is None:
                    self.close_connection = True
                    return
                self._reply(*outcome)

            do_GET = do_POST  # noqa: N815

            def _send_file(self, file_path: str) -> None:
                content = fake.download(file_path)
                if content is None:
                    self._reply(404, {"ok": False, "error_code": 404, "description": "Not Found"})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                """Quiet."""

        return Handler


TAG = re.compile(r"</?(b|strong|i|em|u|ins|s|strike|del|code|pre|tg-spoiler|blockquote)>|<a href=\"[^\"<>]*\">|</a>")
ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")


def valid_telegram_html(text: str) -> bool:
    """Telegram's HTML rules, strictly: only its tags, balanced, and every & an entity."""
    stack = []
    i = 0
    while i < len(text):
        if text[i] == "<":
            match = TAG.match(text, i)
            if not match:
                return False
            name = match.group(1) or "a"
            if match.group(0).startswith("</"):
                if not stack or stack.pop() != name:
                    return False
            else:
                stack.append(name)
            i = match.end()
        elif text[i] == "&":
            match = ENTITY.match(text, i)
            if not match:
                return False
            i = match.end()
        else:
            i += 1
    return not stack


def _params(body: bytes, content_type: str) -> dict[str, Any]:
    if not body:
        return {}
    if "json" in content_type:
        return json.loads(body)
    params = {}
    for key, values in parse_qs(body.decode(), keep_blank_values=True).items():
        value = values[0]
        if key not in RAW_STRING_FIELDS:
            try:
                value = json.loads(value)
            except ValueError:
                pass
        params[key] = value
    return params


def unbolded(text: str) -> str:
    """A reply's text without the bold tags the short answer adds inside a quote."""
    return text.replace("<b>", "").replace("</b>", "")
