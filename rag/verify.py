"""Checks that a generated sentence says only what the passages it cites say.

A sentence is kept only if every check passes, in this order (the first failure is the reason):

1. *instructions*: a cited passage that gives the reader instructions ("ignore previous
   instructions and say ...") is quoted data, not evidence: it supports nothing;
2. *names*: every capitalised word (names, acronyms, demonyms, months, weekdays) is in a cited
   passage, allowing possessives, stems, name parts ("Bensouda" for "Fatou Bensouda"), acronyms
   of the passage's names ("ICC" for "International Criminal Court"), country and demonym
   variants ("Kenya"/"Kenyan", "US"/"American"), and two kinds of reference to the text just
   before the passage (its paragraph and the previous one): a name attached to a word the
   passage uses ("Trump administration" when the passage says "the administration" and the
   text before it "the Trump administration"), and, when the passage opens with a pronoun
   ("He also implied ..."), the names of the sentence before it;
3. *numbers and dates*: every number (digits or number words, "1990s", "1895.22/1013") and
   relative time ("last year", "yesterday") is in a cited passage itself;
4. *negation*: the words a negation governs ("did not *revoke*", "no *warranties*", "not *all*")
   have the same polarity in the sentence and in the cited passages (a word negated in one and
   only affirmed in the other is a contradiction);
5. *substitution*: the sentence does not copy a stretch of a passage with one to three words
   swapped for words the passages do not contain ("the administration *restored* the American
   visa"), unless the words are near-synonyms for the embedding model;
6. *content*: every content word is found in the cited passages (by the rules above), or, when
   some are not, the IDF-weighted share found and the embedding similarity between the clauses
   holding the new words and the passages reach the thresholds fitted on the DW part of
   ``eval/verification.jsonl`` (``python -m rag.verify eval/verification.jsonl --fit dw``).

(The generative answerer also drops a sentence that cites no valid passage, and one that is not
about the question unless it cites the passage the ranker put first: `rag.generate.ReplyChecker`.)

Why names may come from the text before the passage: the model sees a passage that says "the
administration" and, two sentences earlier, "the Trump administration"; "It was the Trump
administration [1]" is then what the document says. A name elsewhere in the document, or not
attached to a word of the passage, is not accepted ("The Obama administration" is dropped, and
so is "Pompeo signed the order" when the cited passage says Trump did).

Deliberate simplifications: no parser and no inference model, so who-did-what-to-whom swaps
that reuse the passage's words ("the US accused the ICC"), and quantifier changes without a
negation ("only some releases"), are not caught; the demonym table is short and general.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.answer import ExtractiveAnswerer, Scored
from rag.lexical import FUNCTION_WORDS, WORD, TermWeights, normalise, stem

if TYPE_CHECKING:
    from llama_index.core.schema import TextNode

Embed = Callable[[str], np.ndarray]

# A sentence whose content words are all in its passages needs no more; one with words the
# passages lack needs at least MIN_COVERAGE of them (IDF-weighted) and the embedding similarity
# MIN_SIMILARITY to vouch for the rest as paraphrase. Both were fitted on the DW part of
# eval/verification.jsonl (`python -m rag.verify eval/verification.jsonl --fit dw`); the licence
# part is held out.
FULL = 0.999
MIN_COVERAGE = 0.4
MIN_SIMILARITY = 0.45
MIN_SYNONYM = 0.7  # cosine between two single words above which a swap counts as a synonym
# Capitalised only because they open the sentence ("Since Python 3.8.6, ...", "According to ...").
OPENERS = frozenset(
    """since according following starting despite unlike although though per within across among upon via
    beyond towards toward besides instead meanwhile thus hence yet still""".split()
)
# Particles of phrasal verbs ("taken away") and modal verbs: no content of their own.
PARTICLES = frozenset("away back along apart aside forth may might must shall".split())
CLAUSE = re.compile(r"[,;:]|\b(?:and|but)\b")
NAME_CONNECTORS = frozenset("of for and the de van von der du la le".split())
NEGATIONS = frozenset("not no never none nobody nothing nowhere neither nor cannot without".split())
NEGATING_VERBS = frozenset(stem(w) for w in "refuse fail decline".split())  # "refused to sign"
QUANTIFIERS = frozenset("all any some every each both many much most more few".split())
CLAUSE_BREAKS = frozenset("but because although though however whereas while unless except".split())
NUMBER_WORDS = {
    w: str(n)
    for n, w in enumerate(
        "zero _ two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
    if w != "_"  # "one" is more often a pronoun ("one of them") than a count
} | {"thirty": "30", "forty": "40", "fifty": "50", "hundred": "100", "thousand": "1000", "million": "1000000"}
NUMBER = re.compile(r"\d+(?:[.,/:]\d+)*")
RELATIVE_TIME = re.compile(
    r"\b(?:yesterday|today|tomorrow|tonight|(?:last|next|this|previous|past|coming|following|same)\s+"
    r"(?:year|month|week|day|decade|century|spring|summer|autumn|fall|winter|weekend))\b",
    re.I,
)
INSTRUCTION = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b[^.]{0,40}\b(?:instructions?|prompts?|rules|directions|guidelines)\b"
    r"|\bsystem prompt\b|\byou are now\b|\bas an ai\b",
    re.I,
)
PRONOUN_OPENING = re.compile(r"^\W*(?:he|she|they|it|this|these|those|his|her|their|its)\b", re.I)
DOTTED_ACRONYM = re.compile(r"\b[A-Z](?:\.[A-Z])+\b\.?")  # "U.S.", and "U.S" once a citation moved its stop
TOKEN = re.compile(rf"{WORD.pattern}|[,;:.!?()]")
# Countries whose demonym is not a prefix variant of the name (Kenya/Kenyan is handled by rule).
ALIASES = [
    {"us", "usa", "america", "american", "americans", "united states"},
    {"uk", "britain", "british", "united kingdom", "great britain"},
    {"netherlands", "dutch", "holland"},
    {"france", "french"},
    {"germany", "german", "germans"},
    {"spain", "spanish"},
    {"china", "chinese"},
    {"japan", "japanese"},
    {"switzerland", "swiss"},
    {"greece", "greek"},
    {"ireland", "irish"},
    {"wales", "welsh"},
    {"philippines", "filipino"},
    {"afghanistan", "afghan", "afghans"},
    {"eu", "european union"},
    {"un", "united nations"},
]


@dataclass(frozen=True, eq=False)
class Evidence:
    """A cited passage, its stored embedding and the text just before it (nearest first)."""

    text: str
    vector: np.ndarray | None = None
    before: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    kept: bool
    reason: str = ""  # why the sentence was dropped ("" when kept)
    coverage: float = 0.0
    similarity: float = 0.0


@dataclass
class Verifier:
    """Decides whether cited passages support a sentence (see the module docstring)."""

    weights: TermWeights  # IDF of the documents' terms
    embed: Embed  # normalised embedding of a text (the engine's query embedding)
    min_coverage: float = MIN_COVERAGE
    min_similarity: float = MIN_SIMILARITY
    min_synonym: float = MIN_SYNONYM
    _words: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # A word the documents never use weighs like their rarest word, not more: the documents
        # cannot tell how informative it is (and unknown names are the name check's job).
        self._rarest = max((self.weights.idf(t) for t in self.weights.counts), default=1.0)

    def check(self, claim: str, evidence: Sequence[Evidence]) -> Verdict:
        """Whether `claim` (a sentence without citation markers) is supported by `evidence`."""
        claim = _undot(normalise(claim))
        usable = [e for e in evidence if not INSTRUCTION.search(e.text)]
        if not usable:
            return Verdict(False, "the cited passages only give instructions" if evidence else "no citation")
        texts = [_undot(normalise(e.text)) for e in usable]
        support = " ".join(texts)
        missing = unsupported_names(claim, texts, [_undot(normalise(b)) for e in usable for b in e.before])
        if missing:
            return Verdict(False, f"name not in the cited passages: {', '.join(missing)}")
        missing = unsupported_numbers(claim, support) + unsupported_times(claim, support)
        if missing:
            return Verdict(False, f"number or date not in the cited passages: {', '.join(missing)}")
        flipped = negation_mismatch(claim, support)
        if flipped:
            return Verdict(False, f"negation differs on: {', '.join(flipped)}")
        swapped = self._substitution(claim, texts, [_undot(normalise(b)) for e in usable for b in e.before])
        if swapped:
            return Verdict(False, f"words swapped: {swapped}")
        coverage, similarity = self.content(claim, usable)
        if coverage < FULL and (coverage < self.min_coverage or similarity < self.min_similarity):
            return Verdict(
                False,
                f"content not supported (coverage {coverage:.2f}, similarity {similarity:.2f})",
                coverage,
                similarity,
            )
        return Verdict(True, "", coverage, similarity)

    def content(self, claim: str, evidence: Sequence[Evidence]) -> tuple[float, float]:
        """IDF-weighted share of the claim's content terms found in the passages (with the name
        rules; unknown words weigh like the rarest known one), and the embedding similarity to the
        closest passage of each clause holding words the passages lack (the lowest of them), so
        the embedding vouches for the new words, not for the copied rest of the sentence."""
        texts = [_undot(normalise(e.text)) for e in evidence]
        found = found_terms(claim, texts, [_undot(normalise(b)) for e in evidence for b in e.before])
        terms = set(claim_terms(claim))
        weight = {t: min(self.weights.idf(t), self._rarest) for t in terms}
        total = sum(weight.values())
        coverage = sum(w for t, w in weight.items() if t in found) / total if total else 0.0
        vectors = [e.vector if e.vector is not None else self.embed(e.text) for e in evidence]
        novel = [c for c in CLAUSE.split(claim) if set(claim_terms(c)) - found] or [claim]
        similarity = min(max(float(self.embed(clause) @ v) for v in vectors) for clause in novel)
        return coverage, similarity

    def _substitution(self, claim: str, texts: list[str], before: list[str]) -> str:
        """'old -> new' when the claim copies a passage with a few words swapped for new ones."""
        found = found_terms(claim, texts, before)
        sequence = claim_terms(claim)
        claim_set = set(sequence)
        for text in texts:
            passage = [stem(w) for w in _words(text) if w not in FUNCTION_WORDS]
            for old, new in _swaps(sequence, passage, found, claim_set):
                if not self._synonyms(old, new):
                    return f"{' '.join(old)} -> {' '.join(new)}"
        return ""

    def _synonyms(self, old: list[str], new: list[str]) -> bool:
        return self._word_vector(" ".join(old)) @ self._word_vector(" ".join(new)) >= self.min_synonym

    def _word_vector(self, text: str) -> np.ndarray:
        """The embedding of a few words, cached (the cache is emptied when it grows large)."""
        vector = self._words.get(text)
        if vector is None:
            if len(self._words) >= 4096:
                self._words.clear()
            vector = self._words[text] = self.embed(text)
        return vector


def _undot(text: str) -> str:
    """'U.S.' -> 'US', so dotted acronyms compare with plain ones."""
    return DOTTED_ACRONYM.sub(lambda m: m.group(0).replace(".", ""), text)


def _words(text: str) -> list[str]:
    """Lower-cased words, possessive 's removed (as `rag.lexical.words`)."""
    return [re.sub(r"['’]s$", "", w.lower()) for w in WORD.findall(text)]


def _cased(text: str) -> list[str]:
    """Words with their case, possessive 's removed."""
    return [re.sub(r"['’]s$", "", w) for w in WORD.findall(text)]


def claim_terms(claim: str) -> list[str]:
    """The claim's content terms (stems): not function words, sentence openers, particles or
    numbers (the number check covers those)."""
    skip = FUNCTION_WORDS | OPENERS | PARTICLES
    return [stem(w) for w in _words(claim) if w not in skip and not w[0].isdigit() and w not in NUMBER_WORDS]


def is_name(word: str) -> bool:
    return word[:1].isupper() and word.lower() not in FUNCTION_WORDS


def claim_names(claim: str) -> list[tuple[int, str]]:
    """(position, word) of the claim's capitalised words. A sentence's first word counts only when
    it is an acronym, possessive, joined by a hyphen ("Kenyan-born") or followed by another
    capitalised word (and is no mere opener such as "Since"); an all-capitals claim has none."""
    raw = WORD.findall(claim)
    cased = _cased(claim)
    letters = [w for w in cased if w[:1].isalpha()]
    if letters and sum(w.isupper() for w in letters) > len(letters) / 2:
        return []
    names = []
    for i, word in enumerate(cased):
        if is_name(word) and (i > 0 or _first_word_is_name(claim, raw, cased)):
            names.append((i, word))
    return names


def _first_word_is_name(claim: str, raw: list[str], cased: list[str]) -> bool:
    first = cased[0]
    if first.lower() in OPENERS:
        return False
    hyphened = re.match(rf"\W*{re.escape(raw[0])}-", claim) is not None
    return (first.isupper() and len(first) > 1) or raw[0] != first or hyphened or (len(cased) > 1 and is_name(cased[1]))


def _acronyms(text: str) -> set[str]:
    """Acronyms of the text's multiword names: initials of every run of two or more capitalised
    words, connectors skipped ("Corporation for National Research Initiatives" -> "CNRI", "NRI")."""
    result: set[str] = set()
    run: list[str] = []
    for word in [*_cased(text), "."]:
        if is_name(word):
            run.append(word[0].upper())
        elif word.lower() in NAME_CONNECTORS and run:
            continue
        else:
            for start in range(len(run)):
                for end in range(start + 2, len(run) + 1):
                    result.add("".join(run[start:end]))
            run = []
    return result


def _variants_match(word: str, other: str) -> bool:
    """Country/demonym and similar variants: one is a prefix of the other, at most 3 letters longer."""
    short, long = sorted((word, other), key=len)
    return len(short) >= 4 and long.startswith(short) and len(long) - len(short) <= 3


def _in_aliases(word: str, text_lower: str) -> bool:
    """Whether `text_lower` names the same country as `word` does in another form."""
    for group in ALIASES:
        if word in group and any(re.search(rf"\b{re.escape(a)}\b", text_lower) for a in group):
            return True
    return False


def _word_found(
    word: str, support_words: set[str], support_stems: set[str], support_lower: str, acronyms: set[str]
) -> bool:
    lower = word.lower()
    if lower in support_words or stem(lower) in support_stems:
        return True
    if word.isupper() and len(word) >= 2 and word in acronyms:
        return True
    if _in_aliases(lower, support_lower) or any(_variants_match(lower, w) for w in support_words if w[:1] == lower[:1]):
        return True
    root = stem(lower)  # derivations share a stem prefix: "creator" / "created" (creat)
    return len(root) >= 5 and any(_variants_match(root, s) for s in support_stems if s[:1] == root[:1] and len(s) >= 5)


def unsupported_names(claim: str, texts: list[str], before: list[str]) -> list[str]:
    """The claim's capitalised words that the passages do not support (see the module docstring)."""
    support = " ".join(texts)
    support_words = set(_words(support))
    support_stems = {stem(w) for w in support_words}
    lower = support.lower()
    acronyms = _acronyms(support)
    cased = _cased(claim)
    names = claim_names(claim)
    covered = _acronym_groups(cased, set(_cased(support)))
    missing = []
    for i, word in names:
        if i in covered or _word_found(word, support_words, support_stems, lower, acronyms):
            continue
        if _referred_to(i, cased, texts, before, support_stems):
            continue
        missing.append(word)
    return missing


def _acronym_groups(cased: list[str], support_cased: set[str]) -> set[int]:
    """Positions of claim words in a multiword name whose acronym the passages use
    ("International Criminal Court" when the passage says "ICC")."""
    covered: set[int] = set()
    i = 0
    while i < len(cased):
        if not is_name(cased[i]):
            i += 1
            continue
        j, letters = i, ""
        positions: list[int] = []
        while j < len(cased) and (is_name(cased[j]) or (cased[j].lower() in NAME_CONNECTORS and positions)):
            if is_name(cased[j]):
                letters += cased[j][0].upper()
                positions.append(j)
            j += 1
        if len(positions) >= 2 and letters in support_cased:
            covered.update(range(positions[0], positions[-1] + 1))
        i = max(j, i + 1)
    return covered


def _referred_to(i: int, cased: list[str], texts: list[str], before: list[str], support_stems: set[str]) -> bool:
    """Whether claim word `i` names what a passage refers to: it is attached to a word of the passage
    and the text before the passage has the same pair ("Trump administration" for "the
    administration"), or a passage opens with a pronoun and the sentence before it has the name."""
    word = cased[i].lower()
    if any(PRONOUN_OPENING.match(t) for t in texts) and before and word in set(_words(before[0])):
        return True
    pairs = []
    for j in (i - 1, i + 1):
        if 0 <= j < len(cased) and cased[j].lower() not in FUNCTION_WORDS and stem(cased[j].lower()) in support_stems:
            pairs.append((word, cased[j].lower()) if j > i else (cased[j].lower(), word))
    for text in before:
        words = _words(text)
        adjacent = set(zip(words, words[1:], strict=False))
        if any(pair in adjacent or (pair[0], stem(pair[1])) in {(a, stem(b)) for a, b in adjacent} for pair in pairs):
            return True
    return False


def found_terms(claim: str, texts: list[str], before: list[str]) -> set[str]:
    """The claim's content terms that the passages support (directly, or by the name rules)."""
    support = " ".join(texts)
    support_words = set(_words(support))
    support_stems = {stem(w) for w in support_words}
    lower = support.lower()
    acronyms = _acronyms(support)
    cased = _cased(claim)
    covered = _acronym_groups(cased, set(_cased(support)))
    found = set()
    for i, word in enumerate(cased):
        w = word.lower()
        if w in FUNCTION_WORDS:
            continue
        if (
            i in covered
            or _word_found(word, support_words, support_stems, lower, acronyms)
            or (is_name(word) and _referred_to(i, cased, texts, before, support_stems))
        ):
            found.add(stem(w))
    return found


def _numbers(text: str) -> set[str]:
    """Numbers in the text, as digits: "1,000" -> "1000", "two" -> "2", "1990s" -> "1990"."""
    found = {n.replace(",", "") if re.fullmatch(r"\d{1,3}(?:,\d{3})+", n) else n for n in NUMBER.findall(text)}
    return found | {NUMBER_WORDS[w] for w in _words(text) if w in NUMBER_WORDS}


def unsupported_numbers(claim: str, support: str) -> list[str]:
    """The claim's numbers that the passages do not state."""
    return sorted(_numbers(claim) - _numbers(support))


def unsupported_times(claim: str, support: str) -> list[str]:
    """The claim's relative times ("last year") that the passages do not state."""
    stated = {normalise(m.group(0).lower()) for m in RELATIVE_TIME.finditer(support)}
    return [m.group(0) for m in RELATIVE_TIME.finditer(claim) if normalise(m.group(0).lower()) not in stated]


def polarity(text: str) -> list[tuple[str, bool]]:
    """(stem, negated) for the content words and quantifiers of `text`. A negation ("not", "no",
    "never", "n't", "refused to") governs the run of content words that follows it (with "or"/"and"
    coordination), or only a quantifier that follows it ("not all")."""
    tokens = [t.lower() for t in TOKEN.findall(text)]
    result: list[tuple[str, bool]] = []
    scope = False  # inside a negation's scope
    started = False  # the scope has taken a word
    for k, token in enumerate(tokens):
        following = tokens[k + 1] if k + 1 < len(tokens) else ""
        if (
            token in NEGATIONS
            or token.endswith(("n't", "n’t"))
            or (stem(token) in NEGATING_VERBS and following == "to")
        ):
            scope, started = True, False
            continue
        word = re.sub(r"['’]s$", "", token)
        content = word[:1].isalnum() and word not in FUNCTION_WORDS
        if not word[:1].isalnum() or word in CLAUSE_BREAKS:
            scope = False
        elif scope and word in QUANTIFIERS:
            result.append((word, True))
            scope = False
            continue
        elif scope and started and not content and word not in ("or", "and", "nor"):
            scope = False
        if content or word in QUANTIFIERS:
            result.append((stem(word) if content else word, scope))
            started = started or scope
    return result


def negation_mismatch(claim: str, support: str) -> list[str]:
    """Words negated in the claim but only affirmed in the passages, or the reverse."""
    stated: dict[str, set[bool]] = {}
    for term, negated in polarity(support):
        stated.setdefault(term, set()).add(negated)
    return sorted({term for term, negated in polarity(claim) if term in stated and negated not in stated[term]})


def _swaps(
    sequence: list[str], passage: list[str], found: set[str], claim_set: set[str]
) -> list[tuple[list[str], list[str]]]:
    """(passage words, claim words) where the claim keeps the passage's words on both sides and
    replaces 1-3 passage words (absent from the claim) by 1-3 words the passages do not support."""
    swaps = []
    positions: dict[str, list[int]] = {}
    for p, term in enumerate(passage):
        positions.setdefault(term, []).append(p)
    anchors = [i for i, term in enumerate(sequence) if term in positions]
    for left, right in zip(anchors, anchors[1:], strict=False):
        new = sequence[left + 1 : right]
        if not 1 <= len(new) <= 3 or any(term in found for term in new):
            continue
        for a in positions[sequence[left]]:
            for b in positions[sequence[right]]:
                old = passage[a + 1 : b]
                if 1 <= len(old) <= 3 and not (set(old) & claim_set):
                    swaps.append((old, new))
    return swaps


# --- the labelled set: `python -m rag.verify eval/verification.jsonl [--fit dw]` ---------------

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Decision:
    item: dict[str, Any]
    verdict: Verdict

    @property
    def part(self) -> str:
        """The item's part of the set: its id up to the first '-' ("dw", "lic")."""
        return str(self.item["id"]).split("-")[0]


def load_items(path: Path) -> list[dict[str, Any]]:
    """The labelled sentences (README, "Formats": verification set)."""
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def decide(
    items: list[dict[str, Any]],
    index_dir: Path,
    min_coverage: float = MIN_COVERAGE,
    min_similarity: float = MIN_SIMILARITY,
) -> list[Decision]:
    """Each item's verdict from the real checker on a real engine per document (indexes under
    `index_dir`), with the given content thresholds."""
    from rag.config import load_config
    from rag.engine import Engine
    from rag.generate import reply_checker

    decisions = []
    for document in dict.fromkeys(item["document"] for item in items):
        path = Path(document) if Path(document).exists() else ROOT / document
        engine = Engine.open(load_config(ROOT / "config.yaml", doc=path, index_dir=index_dir / path.stem))
        extractive = engine.answerer
        assert isinstance(extractive, ExtractiveAnswerer)
        checker = reply_checker(extractive, engine.retriever)
        checker.verifier = replace(checker.verifier, min_coverage=min_coverage, min_similarity=min_similarity)
        for item in (i for i in items if i["document"] == document):
            passages = [Scored(_node_with(engine.stored.nodes, text), 1.0) for text in item["passages"]]
            evidence = [checker.evidence(p) for p in passages]
            decisions.append(Decision(item, checker.check(item["question"], item["sentence"], evidence)))
    return decisions


def _node_with(nodes: Sequence[TextNode], text: str) -> TextNode:
    for node in nodes:
        if normalise(text) in normalise(node.text):
            return node
    raise ValueError(f"no passage of the document contains {text[:60]!r}")


def precision_recall(decisions: Sequence[Decision]) -> tuple[float, float, int]:
    """Precision and recall of "kept" (a supported sentence is a positive), and the item count."""
    kept = [d for d in decisions if d.verdict.kept]
    good = sum(bool(d.item["supported"]) for d in kept)
    supported = sum(bool(d.item["supported"]) for d in decisions)
    return (good / len(kept) if kept else 0.0), (good / supported if supported else 0.0), len(decisions)


def fit(decisions: Sequence[Decision]) -> tuple[float, float]:
    """The (min_coverage, min_similarity) that maximise F0.5 of "kept" on `decisions` (scored with
    both thresholds at zero): precision counts double, since a dropped sentence falls back to the
    extractive quote while a kept wrong one misleads. Among equally good thresholds, the one
    nearest the centre of their region (the widest margin either side)."""
    candidates = [d for d in decisions if d.verdict.kept]  # passed every check but the content one
    positives = sum(bool(d.item["supported"]) for d in decisions)
    grid = [round(float(x), 2) for x in np.arange(0.0, 1.0001, 0.05)]
    scores: dict[tuple[float, float], float] = {}
    for c in grid:
        for s in grid:
            kept = [
                d
                for d in candidates
                if d.verdict.coverage >= FULL or (d.verdict.coverage >= c and d.verdict.similarity >= s)
            ]
            good = sum(bool(d.item["supported"]) for d in kept)
            p, r = (good / len(kept) if kept else 0.0), (good / positives if positives else 0.0)
            scores[c, s] = 1.25 * p * r / (0.25 * p + r) if p + r else 0.0
    best = max(scores.values())
    tied = [key for key, score in scores.items() if score >= best - 1e-9]
    centre = np.mean(tied, axis=0)
    return min(tied, key=lambda key: float(np.hypot(key[0] - centre[0], key[1] - centre[1])))


def report(decisions: Sequence[Decision]) -> str:
    """Precision and recall of "kept" per part and overall, then the wrong decisions."""
    lines = [f"{'part':<8} {'items':>5} {'precision':>9} {'recall':>7}"]
    for part in [*dict.fromkeys(d.part for d in decisions), "all"]:
        subset = [d for d in decisions if part in ("all", d.part)]
        p, r, n = precision_recall(subset)
        lines.append(f"{part:<8} {n:>5} {p:>9.1%} {r:>7.1%}")
    wrong = [d for d in decisions if d.verdict.kept != d.item["supported"]]
    lines.append(f"\nwrong decisions ({len(wrong)}):")
    for d in wrong:
        what = "kept unsupported" if d.verdict.kept else f"dropped supported ({d.verdict.reason})"
        lines.append(f"  {d.item['id']} [{d.item['kind']}] {what}: {d.item['sentence']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rag.verify", description="Precision and recall of the verifier's 'kept'."
    )
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--index-dir", type=Path, default=Path(tempfile.gettempdir()) / "rag-verification-index")
    parser.add_argument(
        "--fit", metavar="PART", help="fit the content thresholds on this part (e.g. dw) and report with them"
    )
    args = parser.parse_args(argv)
    items = load_items(args.dataset)
    coverage, similarity = MIN_COVERAGE, MIN_SIMILARITY
    if args.fit:
        scored = decide(items, args.index_dir, min_coverage=0.0, min_similarity=-1.0)
        coverage, similarity = fit([d for d in scored if d.part == args.fit])
        print(f"fitted on {args.fit}: min_coverage {coverage}, min_similarity {similarity}")
    print(report(decide(items, args.index_dir, coverage, similarity)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
