"""The engine every front end shares: load documents and index once, then answer questions.

Heavy libraries are imported inside `Engine.open`, so checking a question costs nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rag.answer import Answer, ExtractiveAnswerer
from rag.chat import ChatSession
from rag.config import Config
from rag.errors import QuestionError
from rag.lexical import words

if TYPE_CHECKING:
    from rag.ingest import SourceDocument
    from rag.retrieve import HybridRetriever
    from rag.store import Progress, StoredIndex


@dataclass
class Engine:
    config: Config
    documents: list[SourceDocument]
    stored: StoredIndex
    retriever: HybridRetriever
    answerer: ExtractiveAnswerer

    @classmethod
    def open(cls, config: Config, rebuild: bool = False, progress: Progress = lambda message: None) -> Engine:
        """Read the documents, load (or build) the index and get ready to answer."""
        from rag.embedding import load_embed_model
        from rag.retrieve import HybridRetriever
        from rag.store import display_path, load_documents, open_index

        documents = load_documents(config)
        embed_model = load_embed_model(config.embedding)
        stored = open_index(config, documents, embed_model, rebuild=rebuild, progress=progress)
        texts = {display_path(d.path): d.text for d in documents}
        answerer = ExtractiveAnswerer(stored.nodes, texts, config.answer, config.retrieval.top_k)
        return cls(config, documents, stored, HybridRetriever(stored, embed_model, config.retrieval), answerer)

    def new_session(self) -> ChatSession:
        return ChatSession(history_turns=self.config.chat.history_turns)

    def ask(self, question: str, session: ChatSession | None = None) -> Answer:
        """Answer one question; with a session, follow-ups use (and extend) its history."""
        started = time.perf_counter()
        question = check_question(question, self.config.answer.max_question_chars)
        context = session.context_for(question) if session else ""
        queries = [question, f"{question} {context}"] if context else [question]
        answer = self.answerer.answer(question, self.retriever.retrieve(queries), context)
        answer.latency_ms = (time.perf_counter() - started) * 1000
        if session is not None:
            session.add(question, answer)
        return answer


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
