"""The engine every front end shares: load documents and index once, then answer questions.

Heavy libraries are imported inside `Engine.open`, so checking a question costs nothing.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rag.answer import Answer, Answerer, Citation, ExtractiveAnswerer, normalise
from rag.chat import ChatSession, only_asks_for_more, small_talk_reply, unresolved_pronoun, wants_more
from rag.config import Config
from rag.embedding import LockedEmbedding
from rag.errors import QuestionError
from rag.ingest import display_path
from rag.lexical import FUNCTION_WORDS, OTHER_LANGUAGE_WORDS, TermWeights, stem, words

if TYPE_CHECKING:
    from rag.ingest import SourceDocument
    from rag.retrieve import HybridRetriever
    from rag.store import Progress, StoredIndex

MORE_OF_NOTHING = "More about what? Ask me a question about the document first."  # "tell me more" before any answer


@dataclass
class Engine:
    config: Config
    documents: list[SourceDocument]
    stored: StoredIndex
    retriever: HybridRetriever
    answerer: Answerer
    vocabulary: TermWeights  # the documents' content terms, to spot a question in another language
    name: str  # how replies name the documents
    threshold: float  # the answer confidence below which the extractive answerer abstains

    @classmethod
    def open(
        cls,
        config: Config,
        rebuild: bool = False,
        progress: Progress = lambda message: None,
        embedding: LockedEmbedding | None = None,
    ) -> Engine:
        """Load (or build) the index and its documents' texts and get ready to answer; with
        `embedding` (another engine's, after an upload), its model is used rather than a new one."""
        from rag.rank import load_model, model_file

        # first: a broken install fails fast
        model = load_model(model_file(config.answer.ranker_model, config.embedding.model))
        documents, stored, retriever = open_retrieval(config, rebuild, progress, embedding)
        texts = {d.source: d.text for d in documents}
        name = documents[0].title if len(documents) == 1 else f"the {len(documents)} documents"
        extractive = ExtractiveAnswerer(
            stored.passages, texts, config.answer, config.retrieval.top_k, model, name, stored.weights
        )
        answerer: Answerer = extractive
        if config.llm.provider != "none":  # LLM libraries are imported only when configured
            from rag.generate import GenerativeAnswerer, build_llm, reply_checker

            checker = reply_checker(extractive, retriever)
            answerer = GenerativeAnswerer(extractive, build_llm(config.llm), checker, config.llm)
        return cls(config, documents, stored, retriever, answerer, extractive.weights, name, extractive.threshold)

    def new_session(self) -> ChatSession:
        return ChatSession(history_turns=self.config.chat.history_turns)

    def ask(
        self, question: str, session: ChatSession | None = None, on_draft: Callable[[str], None] | None = None
    ) -> Answer:
        """Answer one question; with a session, follow-ups use (and extend) its history. With an
        LLM configured, `on_draft` receives the unverified reply while it streams.

        Safe to call from several threads for different sessions: only the embedding model is
        shared state, and `LockedEmbedding` serialises it; an LLM call holds no lock."""
        started = time.perf_counter()
        question = check_question(question, self.config.answer.max_question_chars)
        answer = self.reply_without_search(question)
        pronoun = session and unresolved_pronoun(question, session, [d.text for d in self.documents])
        if answer is None and pronoun:  # nothing in this conversation for "he" to stand for: ask, do not guess
            answer = Answer(
                question, f"Who do you mean by “{pronoun}”? Please ask again with the name.", True, mode="conversation"
            )
        if answer is None and session and not session.answered and only_asks_for_more(question):
            answer = Answer(question, MORE_OF_NOTHING, True, mode="conversation")  # no quote yet to continue
        if answer is None:
            context = session.context_for(question) if session else ""
            standalone, context = self.answerer.standalone(question, context) if context else (question, "")
            queries = [standalone, f"{standalone} {context}"] if context else [standalone]
            candidates = self.retriever.retrieve(queries)
            more = session is not None and session.answered and wants_more(question)
            if more and session is not None:  # the next passages, not what this conversation already quoted
                candidates = [c for c in candidates if c.node.node_id not in session.quoted]
            answer = self.answerer.answer(standalone, candidates, context, on_draft)
            if more and answer.abstained and answer.citations and only_asks_for_more(question):
                answer = more_of(answer)  # a bare "tell me more" asks for the next passage, not for an answer
            answer.question = question
            if session is not None:
                session.add(question, answer)
        answer.latency_ms = (time.perf_counter() - started) * 1000
        return answer

    def reply_without_search(self, question: str) -> Answer | None:
        """A reply to small talk, or a hint for a question in another language; None to search."""
        reply = small_talk_reply(question)
        if reply is not None:
            return Answer(question, reply.replace("{document}", self.name), False, mode="conversation")
        if in_another_language(question, self.vocabulary):
            hint = f"Please ask in the language of the document ({self.name}): I couldn't match your words to it."
            return Answer(question, hint, True, mode="conversation")
        return None

    @property
    def summary(self) -> str:
        """A one-line summary of what the bot knows: the first sentence of the first document."""
        return normalise(self.stored.passages.text(0))

    def paragraphs_around(self, citation: Citation) -> list[tuple[int, str]]:
        """The cited paragraph and its content neighbours, as (paragraph number, text)."""
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
            "passages": len(self.stored.passages),
            "model": manifest["model"],
            "chunking": self.config.chunking.unit,
            "index": str(self.config.index_dir),
        }


def in_another_language(question: str, vocabulary: TermWeights) -> bool:
    """Whether the question is written in another language than English documents: it uses common
    function words of another European language, none of English, and few of the documents' words."""
    tokens = words(question)
    if len(tokens) < 3 or any(w in FUNCTION_WORDS for w in tokens):
        return False
    foreign = sum(w in OTHER_LANGUAGE_WORDS for w in tokens)
    known = sum(stem(w) in vocabulary for w in tokens)
    return foreign >= 1 and known < len(tokens) / 2


def more_of(abstained: Answer) -> Answer:
    """The closest passage of an abstention, quoted as the reply to a request for more."""
    first = abstained.citations[0]
    return Answer(
        abstained.question,
        first.text,
        False,
        abstained.citations,
        confidence=abstained.confidence,
        parts=[(first.text, first.n)],
    )


def open_retrieval(
    config: Config,
    rebuild: bool = False,
    progress: Progress = lambda message: None,
    embedding: LockedEmbedding | None = None,
) -> tuple[list[SourceDocument], StoredIndex, HybridRetriever]:
    """The documents (the configured ones, then those added with `rag add`), their index (loaded,
    or updated when missing or stale) and a retriever over it. An up-to-date index gives the
    documents' texts too, so no document is parsed at start. `embedding` is the model to share
    (with its lock); by default a new one is loaded."""
    from rag.embedding import load_embed_model
    from rag.retrieve import HybridRetriever
    from rag.store import open_current

    embedding = embedding or LockedEmbedding(load_embed_model(config.embedding, progress))
    with embedding.lock:  # building embeds passages: not beside another thread's question
        stored = open_current(config, embedding.model, rebuild=rebuild, progress=progress)
    retriever = HybridRetriever(stored, embedding, config.retrieval)  # shared by answering threads
    return stored.documents, stored, retriever


def freeze_startup_objects(collect: bool = True) -> None:
    """Take every object alive now (the libraries, the open engine) out of the garbage
    collector's sight: exit then does not walk them (0.15-0.2 s of every `rag ask`), and
    collections while answering skip them. Only for a process whose engine lives until it exits
    (`rag ask`, `rag chat`): a frozen object in a reference cycle is never freed, so the bot,
    which reopens its engine after an upload, does not freeze. `collect` first frees what
    opening left over (0.1 s at 60,000 passages; `rag ask`, which exits after one answer, skips it)."""
    if collect:
        gc.collect()
    gc.freeze()


def check_question(question: str, limit: int) -> str:
    """The question with its whitespace normalised; QuestionError when it cannot be asked."""
    question = normalise(question)
    if not question:
        raise QuestionError("Please ask a question about the document.")
    if len(question) > limit:
        raise QuestionError(f"That question is {len(question):,} characters long; please keep it to {limit:,} at most.")
    if not words(question):
        raise QuestionError("Please ask your question in words.")
    return question
