"""Word-level text analysis shared by retrieval and answering: tokens, stems, content terms, IDF.

Deliberately simple: lower-cased word tokens, an English Snowball stemmer (PyStemmer) and a fixed
list of function words and question words. `content_terms` is the one analyser: BM25 indexes and
queries with it (`rag.retrieve.Bm25Index`), and the answerer's coverage features and term weights
use it, so all of them agree on what a term is.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Iterable

WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
POSSESSIVE = re.compile(r"['’][sS]$")

FUNCTION_WORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each else ever few for
    from further had has have having he her here hers herself him himself his how i if in into is
    it its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them themselves
    then there these they this those through to too under until up very was we were what when where
    which while who whom whose why will with would you your yours yourself yourselves s t
    many much anything something someone anyone""".split()
)
# The commonest function words of other European languages (German, French, Spanish, Italian,
# Portuguese, Dutch) that are not English words: a question made of them is in another language.
OTHER_LANGUAGE_WORDS = (
    frozenset(
        """der die das und ist nicht wer hat was wie warum wann wo welche welcher mit von den dem ein
    eine einen zu auf für les est une qui que quoi pourquoi quand où avec pour dans pas sont el la
    los las es por qué quién cómo cuándo dónde con una del il che chi perché quando dove sono di
    o os um uma não quem onde porque het een en wie wat waarom wanneer waar niet zijn""".split()
    )
    - FUNCTION_WORDS
)
ANAPHORS = frozenset("he she him her his hers they them their theirs it its this that these those there then".split())


def normalise(text: str) -> str:
    """`text` with every run of whitespace made one space, and none at the ends."""
    return " ".join(text.split())


def cased_words(text: str) -> list[str]:
    """Word tokens with their case, with a possessive 's removed ("Bensouda's" -> "Bensouda")."""
    return [POSSESSIVE.sub("", w) for w in WORD.findall(text)]


def words(text: str) -> list[str]:
    """Word tokens, lower-cased, with a possessive 's removed ("Bensouda's" -> "bensouda")."""
    return [w.lower() for w in cased_words(text)]


_local = threading.local()


def thread_stemmer():
    """This thread's English Snowball stemmer: PyStemmer objects must not be used by two threads
    at once, and the engine answers different chats in parallel threads."""
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        import Stemmer

        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer


def stem(word: str) -> str:
    return thread_stemmer().stemWord(word)


def content_terms(text: str) -> list[str]:
    """Stems of the words that carry meaning (function and question words dropped)."""
    return [stem(w) for w in words(text) if w not in FUNCTION_WORDS]


def has_anaphor(text: str) -> bool:
    """Whether the text leans on something said before ("she", "it", "there", ...)."""
    return any(w in ANAPHORS for w in words(text))


class TermWeights:
    """Inverse document frequency of stems over a set of passages (each given as its set of terms)."""

    def __init__(self, passage_terms: Iterable[set[str]]):
        counts: Counter[str] = Counter()
        total = 0
        for terms in passage_terms:
            counts.update(terms)
            total += 1
        self.total = max(total, 1)
        self.counts = counts

    @classmethod
    def from_counts(cls, counts: dict[str, int], total: int) -> TermWeights:
        """Weights from document frequencies computed before (persisted with the index)."""
        weights = cls([])
        weights.counts, weights.total = Counter(counts), max(total, 1)
        return weights

    def __contains__(self, term: str) -> bool:
        return term in self.counts

    def idf(self, term: str) -> float:
        return math.log(1 + (self.total + 1) / (self.counts.get(term, 0) + 0.5))

    def coverage(self, query_terms: Iterable[str], passage_terms: set[str]) -> float:
        """IDF-weighted share of the query's terms that the passage contains (0..1)."""
        terms = set(query_terms)
        total = sum(self.idf(t) for t in terms)
        return sum(self.idf(t) for t in terms if t in passage_terms) / total if total else 0.0
