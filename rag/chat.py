"""Per-conversation state and follow-up handling.

A follow-up leans on the previous turn when it uses a pronoun or similar ("Where was she born?")
or has no content words of its own ("Why?"). Such a question is retrieved together with the
previous question and the answer's passage, and that text is handed to the answerer as context.
A request for more ("tell me more", "what else did he say?") is answered from the passages this
conversation has not quoted yet. Greetings and thanks get a short reply, not a search.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rag.answer import Answer
from rag.lexical import FUNCTION_WORDS, content_terms, has_anaphor


@dataclass
class ChatSession:
    """The recent turns of one conversation (bounded by ``chat.history_turns``)."""

    history_turns: int = 3
    turns: deque[tuple[str, Answer]] = field(default_factory=deque)
    quoted: set[str] = field(default_factory=set)  # ids of the passages quoted so far

    def add(self, question: str, answer: Answer) -> None:
        if self.history_turns == 0:
            return
        if not answer.abstained:
            self.quoted.update(c.passage_id for c in answer.citations[: max(len(answer.parts), 1)])
        self.turns.append((question, answer))
        while len(self.turns) > self.history_turns:
            self.turns.popleft()

    def reset(self) -> None:
        self.turns.clear()
        self.quoted.clear()

    def to_record(self) -> dict[str, Any]:
        """The session as JSON-ready values (`from_record` restores it)."""
        return {
            "history_turns": self.history_turns,
            "turns": [[question, answer.to_record()] for question, answer in self.turns],
            "quoted": sorted(self.quoted),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ChatSession:
        return cls(
            record["history_turns"],
            deque((question, Answer.from_record(answer)) for question, answer in record["turns"]),
            {q for q in record["quoted"] if isinstance(q, str)},  # older records held [path, start]: dropped
        )

    @property
    def answered(self) -> bool:
        """Whether the last turn quoted something (so "tell me more" has something to continue)."""
        return bool(self.turns) and not self.turns[-1][1].abstained

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


MORE = re.compile(
    r"\b(what|who|anything|something|tell me) else\b|\btell me more\b|\b(say|know|tell me) more\b"
    r"|^\W*(and|more|go on|continue)\W*$",
    re.I,
)
_TO_WHOM = r"(\s+(there|bot|all|everyone|again|folks|friend))?"
SMALL_TALK = {
    "greeting": (
        re.compile(rf"^\W*(hi|hello|hey|hiya|good (morning|afternoon|evening)|greetings){_TO_WHOM}\W*$", re.I),
        "Hello! Ask me anything about {document}.",
    ),
    "thanks": (
        re.compile(
            rf"^\W*(thanks?|thank you|thx|cheers)(\s+(a lot|so much|very much))?"
            rf"(\s+for\s+(that|this|the answer|your help))?{_TO_WHOM}\W*$",
            re.I,
        ),
        "You're welcome! Ask another question whenever you like.",
    ),
    "goodbye": (
        re.compile(rf"^\W*(bye|goodbye|see you|ciao|good night)(\s+(now|later|soon))?{_TO_WHOM}\W*$", re.I),
        "Goodbye! Come back with more questions any time.",
    ),
}


# personal pronouns by the gender they refer to (other anaphors, "it", "they", "there", fit anything)
PERSONAL_PRONOUNS = {
    **dict.fromkeys(("he", "him", "his", "himself"), "male"),
    **dict.fromkeys(("she", "her", "hers", "herself"), "female"),
}
NAME = re.compile(r"\b[A-Z][\w’'-]+(?:\s+[A-Z][\w’'-]+)*")
_SENTENCE_AFTER = re.compile(r"[^.!?]*[.!?]+[^.!?]*[.!?]?")  # the rest of the sentence and the next one


def personal_pronoun(question: str) -> str | None:
    """The first "he" or "she" of the question, or None. Only these subjects are asked about: a
    "his" or "her" is mostly bound by a noun of the question itself ("What did the president put
    his signature to?")."""
    return next((w for w in re.findall(r"[a-z]+", question.lower()) if w in ("he", "she")), None)


def unresolved_pronoun(question: str, session: ChatSession, texts: list[str]) -> str | None:
    """The personal pronoun of `question` that nothing in the conversation can stand for, or None.

    It can stand for a pronoun of the same gender in the last turn (question or quote), or for a
    name there of that gender in the documents (`texts`); when nobody there has a known gender,
    for any name. A fresh or reset conversation holds nothing, so every "he" or "she" in it is
    unresolved."""
    pronoun = personal_pronoun(question)
    if pronoun is None or _bound_in_question(question, pronoun):
        return None
    if not session.turns:
        return pronoun
    previous_question, previous_answer = session.turns[-1]
    context = f"{previous_question} {'' if previous_answer.abstained else previous_answer.text}"
    names = _names(context)
    genders = {PERSONAL_PRONOUNS[w] for w in re.findall(r"[a-z]+", context.lower()) if w in PERSONAL_PRONOUNS}
    genders |= {gender for gender in (name_gender(name, texts) for name in names) if gender is not None}
    if PERSONAL_PRONOUNS[pronoun] in genders:
        return None
    return pronoun if genders or not names else None  # only people of the other gender, or nobody at all


def _bound_in_question(question: str, pronoun: str) -> bool:
    """Whether the question itself gives the pronoun its person: a name ("What did Tesla do with
    his money?"), or "who" or "person" before it ("Who hurt his arm?")."""
    before = re.findall(r"[a-z]+", re.split(rf"\b{pronoun}\b", question.lower(), maxsplit=1)[0])
    return bool(_names(question)) or any(w in ("who", "whom", "whose", "person") for w in before)


def _names(text: str) -> list[str]:
    """Runs of capitalised words in `text` that are not function words ("Who", "The")."""
    return [m.group() for m in NAME.finditer(text) if m.group().lower() not in FUNCTION_WORDS]


def name_gender(name: str, texts: list[str]) -> str | None:
    """The gender the documents use for `name`: the personal pronouns in the rest of the sentence
    after each mention of its last word, and the next sentence, counted; None when they are
    absent or mixed (so an unknown name fits any pronoun)."""
    counts = {"male": 0, "female": 0}
    last = re.escape(name.split()[-1])
    for text in texts:
        for mention in re.finditer(rf"\b{last}\b", text):
            after = _SENTENCE_AFTER.match(text, mention.end())
            for word in re.findall(r"[a-z]+", after.group().lower() if after else ""):
                if word in PERSONAL_PRONOUNS:
                    counts[PERSONAL_PRONOUNS[word]] += 1
    male, female = counts["male"], counts["female"]
    if male > 2 * female:
        return "male"
    if female > 2 * male:
        return "female"
    return None


def is_follow_up(question: str) -> bool:
    return has_anaphor(question) or not content_terms(question) or wants_more(question)


def wants_more(question: str) -> bool:
    """Whether the question asks for more of what was said ("tell me more", "what else did he say?")."""
    return bool(MORE.search(question))


def only_asks_for_more(question: str) -> bool:
    """A bare request for more ("tell me more", "anything else?"): no words of its own beyond it."""
    return wants_more(question) and not content_terms(MORE.sub(" ", question))


def is_goodbye(question: str) -> bool:
    """Whether the message only says goodbye (the chat REPL then ends)."""
    return bool(SMALL_TALK["goodbye"][0].match(question))


def small_talk_reply(question: str) -> str | None:
    """A short reply to a greeting, thanks or goodbye; None for a real question."""
    return next((reply for pattern, reply in SMALL_TALK.values() if pattern.match(question)), None)
