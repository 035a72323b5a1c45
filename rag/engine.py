"""The engine every front end shares: load documents and index once, then answer questions.

Heavy libraries are imported inside `Engine.open`, so checking a question costs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rag.answer import Answer, Citation, ExtractiveAnswerer, normalise
from rag.chat import ChatSession
from rag.config import Config
from rag.errors import QuestionError
from rag.lexical import words

if TYPE_CHECKING:
    from rag.generate import GenerativeAnswerer
    from rag.ingest import SourceDocument
    from rag.retrieve import HybridRetriever
    from rag.store import Progress, StoredIndex


@dataclass
class Engine:
    config: Config
    documents: list[SourceDocument]
    stored: StoredIndex
    retriever: HybridRetriever
    answerer: ExtractiveAnswerer | GenerativeAnswerer

    @classmethod
    def open(cls, config: Config, rebuild: bool = False, progress: Progress = lambda message: None) -> Engine:
        """Read the documents, load (or build) the index and get ready to answer."""
        from rag.embedding import LockedEmbedding, load_embed_model
        from rag.retrieve import HybridRetriever
        from rag.store import display_path, load_documents, open_index

        documents = load_documents(config)
        embed_model = load_embed_model(config.embedding, progress)
        stored = open_index(config, documents, embed_model, rebuild=rebuild, progress=progress)
        embed_model = LockedEmbedding(embed_model)  # shared by the threads that answer questions
        texts = {display_path(d.path): d.text for d in documents}
        answerer = ExtractiveAnswerer(stored.nodes, texts, config.answer, config.retrieval.top_k)
        if config.llm.provider != "none":  # LLM libraries are imported only when configured
            from rag.generate import GenerativeAnswerer, build_llm

            answerer = GenerativeAnswerer(answerer, build_llm(config.llm), embed_model, config.llm)
        return cls(config, documents, stored, HybridRetriever(stored, embed_model, config.retrieval), answerer)

    def new_session(self) -> ChatSession:
        return ChatSession(history_turns=self.config.chat.history_turns)

    def ask(self, question: str, session: ChatSession | None = None, on_draft: Callable[[str], None] | None = None) -> Answer:
        """Answer one question; with a session, follow-ups use (and extend) its history. With an
        LLM configured, `on_draft` receives the unverified reply while it streams.

        Safe to call from several threads for different sessions: only the embedding model is
        shared state, and `LockedEmbedding` serialises it; an LLM call holds no lock."""
        started = time.perf_counter()
        question = check_question(question, self.config.answer.max_question_chars)
        context = session.context_for(question) if session else ""
        standalone, context = self.answerer.standalone(question, context) if context else (question, "")
        queries = [standalone, f"{standalone} {context}"] if context else [standalone]
        answer = self.answerer.answer(standalone, self.retriever.retrieve(queries), context, on_draft)
        answer.question = question
        if session is not None:
            session.add(question, answer)
        answer.latency_ms = (time.perf_counter() - started) * 1000
        return answer

    @property
    def summary(self) -> str:
        """A one-line summary of what the bot knows: the first sentence of the first document."""
        return normalise(self.stored.nodes[0].text)

    def paragraphs_around(self, citation: Citation) -> list[tuple[int, str]]:
        """The cited paragraph and its content neighbours, as (paragraph number, text)."""
        from rag.store import display_path

        for document in self.documents:
            if display_path(document.path) != citation.source:
                continue
            content = document.content()
            at = next((i for i, p in enumerate(content) if p.number == citation.paragraph), None)
            if at is None:
                return []
            return [(p.number, normalise(document.text[p.start : p.end])) for p in content[max(at - 1, 0) : at + 2]]
        return []

    def about(self) -> dict[str, Any]:
        """Facts about the documents, model and index, for /about."""
        manifest = self.stored.manifest
        return {
            "documents": [f"{d.title} ({d.path.name}, {len(d.text):,} characters)" for d in self.documents],
            "passages": len(self.stored.nodes),
            "model": manifest["model"],
            "chunking": self.config.chunking.unit,
            "index": str(self.config.index_dir),
        }


def check_question(question: str, limit: int) -> str:
    """The question with its whitespace normalised; QuestionError when it cannot be asked."""
    question = " ".join(question.split())
    if not question:
        raise QuestionError("Please ask a question about the document.")
    if len(question) > limit:
        raise QuestionError(f"That question is {len(question):,} characters long; please keep it under {limit:,}.")
    if not words(question):
        raise QuestionError("Please ask your question in words.")
    return question
