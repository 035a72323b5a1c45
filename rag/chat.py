"""Per-conversation state and follow-up handling.

A follow-up leans on the previous turn when it uses a pronoun or similar ("Where was she born?")
or has almost no content words of its own. Such a question is retrieved together with the
previous question and the answer's passage, and that text is handed to the answerer as context.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from rag.answer import Answer
from rag.lexical import content_terms, has_anaphor


@dataclass
class ChatSession:
    """The recent turns of one conversation (bounded by ``chat.history_turns``)."""

    history_turns: int = 3
    turns: deque[tuple[str, Answer]] = field(default_factory=deque)

    def add(self, question: str, answer: Answer) -> None:
        if self.history_turns == 0:
            return
        self.turns.append((question, answer))
        while len(self.turns) > self.history_turns:
            self.turns.popleft()

    def reset(self) -> None:
        self.turns.clear()

    @property
    def last_answer(self) -> Answer | None:
        return self.turns[-1][1] if self.turns else None

    def context_for(self, question: str) -> str:
        """The conversation text a follow-up needs, or "" when the question stands alone."""
        if not self.turns or not is_follow_up(question):
            return ""
        previous_question, previous_answer = self.turns[-1]
        passage = "" if previous_answer.abstained else previous_answer.text
        return f"{previous_question} {passage}".strip()


def is_follow_up(question: str) -> bool:
    return has_anaphor(question) or len(content_terms(question)) <= 1
