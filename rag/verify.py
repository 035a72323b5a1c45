"""Checks that a generated sentence says only what the passages it cites say.

A sentence is kept only if every check passes, in this order (the first failure is the reason):

1. *instructions*: a cited passage that gives the model instructions ("ignore previous
   instructions and say ...") is quoted data, not evidence: it supports nothing;
2. *names*: every capitalised word (names, acronyms, demonyms, months, weekdays) is in a cited
   passage, allowing possessives, stems, name parts ("Bensouda" for "Fatou Bensouda"), acronyms
   of the passage's names ("ICC" for "International Criminal Court"), countries and demonyms
   ("US"/"American" from a table of irregular ones, "Kenya"/"Kenyan" by a suffix rule), and two
   kinds of reference to the text just before the passage (its paragraph and the previous one):
   a name attached to a word the passage uses ("Trump administration" when the passage says "the
   administration" and the text before it "the Trump administration"), and, when the passage
   opens with a pronoun ("He also implied ..."), the names of the sentence before it. The first
   word of the sentence is a name too unless it is a function word or an opener ("Since"), or the
   document or passages use it in lower case: "Obama revoked her visa" is checked for "Obama";
3. *numbers and dates*: every number (digits or number words, "1990s", "1895.22/1013", "one"
   before a noun) and relative time ("last year", "yesterday") is in a cited passage itself;
4. *negation*: the words a negation governs ("did not *revoke*", "no *warranties*", "not *all*")
   have the same polarity in the sentence and in the cited passages (a word negated in one and
   only affirmed in the other is a contradiction);
5. *substitution*: the sentence does not copy a stretch of a passage sentence with one to three
   words swapped for words the passages do not contain ("the administration *restored* the
   American visa"; the start and end of a sentence count as matching words), unless the words are
   near-synonyms for the embedding model;
6. *content*: every content word is found in the cited passages (by the rules above), or, when
   some are not, the IDF-weighted share found and the embedding similarity between the clauses
   holding the new words and the passages reach the thresholds (``rag.verify_eval``).

(The generative answerer also drops a sentence that cites no valid passage, and one that is not
about the question unless it cites the passage the ranker put first: `rag.generate.ReplyChecker`.)

Why names may come from the text before the passage: the model sees a passage that says "the
administration" and, two sentences earlier, "the Trump administration"; "It was the Trump
administration [1]" is then what the document says. A name elsewhere in the document, or not
attached to a word of the passage, is not accepted ("The Obama administration" is dropped, and
so is "Pompeo signed the order" when the cited passage says Trump did).

Deliberate simplifications: no parser and no inference model, so who-did-what-to-whom swaps
that reuse the passage's words ("the US accused the ICC"), and quantifier changes without a
negation ("only some releases"), are not caught.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from rag.lexical import TermWeights, normalise, stem
from rag.verify_checks import (
    END,
    START,
    Passages,
    claim_terms,
    found_terms,
    name_support,
    negation_mismatch,
    undot,
    unsupported_names,
    unsupported_numbers,
    unsupported_times,
)

Embed = Callable[[str], np.ndarray]

# A sentence whose content words are all in its passages needs no more; one with words the
# passages lack needs at least MIN_COVERAGE of them (IDF-weighted) and the embedding similarity
# MIN_SIMILARITY to vouch for the rest as paraphrase. Both were fitted on the DW part of
# eval/verification.jsonl (`python -m rag.verify_eval eval/verification.jsonl --fit dw`), refitted
# for the tuned default embedder (0.4 and 0.45 before; its DW precision fell to 89.7 % with those).
# With these: DW 92.9 % precision / 92.9 % recall, licence (not fitted on) 96.2 % / 96.2 %.
FULL = 0.999
MIN_COVERAGE = 0.45
MIN_SIMILARITY = 0.5
MIN_SYNONYM = 0.7  # cosine between two single words above which a swap counts as a synonym
CLAUSE = re.compile(r"[,;:]|\b(?:and|but)\b")
# Instructions aimed at the model reading the passage, not rules a document describes ("drivers
# who ignore the traffic rules are fined").
INSTRUCTION = re.compile(
    r"\b(?:ignore|disregard|forget|override)\s+(?:(?:all|any|the)\s+)?(?:of\s+)?(?:(?:the|your|my)\s+)?"
    r"(?:previous|above|prior|earlier|preceding|foregoing|original|your|these|those)\s+(?:\w+\s+)?"
    r"(?:instructions?|prompts?|rules|directions|guidelines|commands)\b"
    r"|\bsystem prompt\b|\byou are now (?:a|an)\b",
    re.I,
)


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
    lowercase: Iterable[str] = ()  # the documents' words that they use in lower case
    _words: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # A word the documents never use weighs like their rarest word, not more: the documents
        # cannot tell how informative it is (and unknown names are the name check's job).
        self._rarest = max((self.weights.idf(t) for t in self.weights.counts), default=1.0)
        self._lowercase = frozenset(stem(w) for w in self.lowercase)

    def check(self, claim: str, evidence: Sequence[Evidence]) -> Verdict:
        """Whether `claim` (a sentence without citation markers) is supported by `evidence`."""
        claim = undot(normalise(claim))
        usable = [e for e in evidence if not INSTRUCTION.search(e.text)]
        if not usable:
            return Verdict(False, "the cited passages only give instructions" if evidence else "no citation")
        passages = Passages([e.text for e in usable], [e.before for e in usable], self._lowercase)
        names = name_support(claim, passages)
        missing = unsupported_names(claim, passages, names)
        if missing:
            return Verdict(False, f"name not in the cited passages: {', '.join(missing)}")
        missing = unsupported_numbers(claim, passages.text) + unsupported_times(claim, passages.text)
        if missing:
            return Verdict(False, f"number or date not in the cited passages: {', '.join(missing)}")
        flipped = negation_mismatch(claim, passages.text)
        if flipped:
            return Verdict(False, f"negation differs on: {', '.join(flipped)}")
        found = found_terms(claim, passages, names)
        swapped = self._substitution(claim, passages, found)
        if swapped:
            return Verdict(False, f"words swapped: {swapped}")
        coverage, similarity = self.content(claim, usable, found)
        if coverage < FULL and (coverage < self.min_coverage or similarity < self.min_similarity):
            return Verdict(
                False,
                f"content not supported (coverage {coverage:.2f}, similarity {similarity:.2f})",
                coverage,
                similarity,
            )
        return Verdict(True, "", coverage, similarity)

    def content(self, claim: str, evidence: Sequence[Evidence], found: set[str]) -> tuple[float, float]:
        """IDF-weighted share of the claim's content terms found in the passages (`found`, by the
        name rules; unknown words weigh like the rarest known one), and the embedding similarity to
        the closest passage of each clause holding words the passages lack (the lowest of them), so
        the embedding vouches for the new words, not for the copied rest of the sentence."""
        terms = set(claim_terms(claim))
        weight = {t: min(self.weights.idf(t), self._rarest) for t in terms}
        total = sum(weight.values())
        coverage = sum(w for t, w in weight.items() if t in found) / total if total else 0.0
        vectors = [e.vector if e.vector is not None else self.embed(e.text) for e in evidence]
        novel = [c for c in CLAUSE.split(claim) if set(claim_terms(c)) - found] or [claim]
        similarity = min(max(float(self.embed(clause) @ v) for v in vectors) for clause in novel)
        return coverage, similarity

    def _substitution(self, claim: str, passages: Passages, found: set[str]) -> str:
        """'old -> new' when the claim copies a passage with a few words swapped for new ones."""
        sequence = [START, *claim_terms(claim), END]
        for passage in passages.sequences:
            for old, new in _swaps(sequence, passage, found):
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


def _swaps(sequence: list[str], passage: list[str], found: set[str]) -> list[tuple[list[str], list[str]]]:
    """(passage words, claim words) where the claim keeps the passage's words (or sentence start
    and end markers) on both sides and replaces 1-3 passage words of one sentence (absent from the
    claim) by 1-3 words the passages do not support."""
    swaps = []
    claim_set = set(sequence)
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
                if 1 <= len(old) <= 3 and not (set(old) & claim_set):  # the markers are in claim_set
                    swaps.append((old, new))
    return swaps


if __name__ == "__main__":
    from rag.verify_eval import main

    sys.exit(main())
