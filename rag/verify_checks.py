"""The word-level checks of `rag.verify`: names (with their variants and references to the text
before a passage), numbers, relative times and negation, on the cited passages analysed once
(`Passages`). See the `rag.verify` docstring for the rules."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from rag.lexical import FUNCTION_WORDS, WORD, cased_words, normalise, stem, words

# Capitalised only because they open the sentence ("Since Python 3.8.6, ...", "However, ...").
OPENERS = frozenset(
    """since according following starting despite unlike although though per within across among upon via
    beyond towards toward besides instead meanwhile thus hence yet still however moreover furthermore
    therefore later earlier finally also""".split()
)
# Particles of phrasal verbs ("taken away") and modal verbs: no content of their own.
PARTICLES = frozenset("away back along apart aside forth may might must shall".split())
NAME_CONNECTORS = frozenset("of for and the de van von der du la le".split())
NEGATIONS = frozenset("not no never none nobody nothing nowhere neither nor cannot without".split())
NEGATING_VERBS = frozenset(stem(w) for w in "refuse fail decline".split())  # "refused to sign"
QUANTIFIERS = frozenset("all any some every each both many much most more few".split())
CLAUSE_BREAKS = frozenset("but because although though however whereas while unless except".split())
NUMBER_WORDS = {
    w: str(n)
    for n, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
} | {"thirty": "30", "forty": "40", "fifty": "50", "hundred": "100", "thousand": "1000", "million": "1000000"}
# "one" is a count only before a noun ("one soldier"), not as a pronoun ("one of them", "the one
# who", "one another").
PRONOUN_ONE_BEFORE = frozenset("the this that which any every each no someone anyone".split())
PRONOUN_ONE_AFTER = frozenset("another other others".split())
NUMBER = re.compile(r"\d+(?:[.,/:]\d+)*")
RELATIVE_TIME = re.compile(
    r"\b(?:yesterday|today|tomorrow|tonight|(?:last|next|this|previous|past|coming|following|same)\s+"
    r"(?:year|month|week|day|decade|century|spring|summer|autumn|fall|winter|weekend))\b",
    re.I,
)
PRONOUN_OPENING = re.compile(r"^\W*(?:he|she|they|it|this|these|those|his|her|their|its)\b", re.I)
DOTTED_ACRONYM = re.compile(r"\b[A-Z](?:\.[A-Z])+\b\.?")  # "U.S.", and "U.S" once a citation moved its stop
TOKEN = re.compile(rf"{WORD.pattern}|[,;:.!?()]")
SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)]*\s+")
START, END = "<s>", "</s>"  # sentence boundaries in the substitution check

# Demonyms by rule: the country's name (or it without a final vowel) and one of these endings
# ("Kenya"/"Kenyan", "Italy"/"Italian", "China"/"Chinese", "Iraq"/"Iraqi", "Sweden"/"Swedish"),
# accepted only where the longer form is used as an adjective ("Kenyan-born", "Kenyan troops"),
# so that first names ("Julia"/"Julian") do not match.
DEMONYM_ENDINGS = ("n", "an", "ian", "ese", "i", "ish")
NOT_ADJECTIVE_AFTER = FUNCTION_WORDS | frozenset("said says told wrote asked added".split())
# Countries whose names and demonyms the rule above does not relate; matched with their case
# ("US" is not the pronoun "us").
ALIAS_TABLE = """US/USA/America/American/United States; UK/Britain/British/Briton/United Kingdom/Great Britain;
England/English; Scotland/Scottish/Scots; Wales/Welsh; Ireland/Irish; Netherlands/Holland/Dutch; France/French;
Germany/German; Spain/Spanish; Switzerland/Swiss; Greece/Greek; Denmark/Danish/Dane; Sweden/Swede;
Finland/Finn; Norway/Norwegian; Iceland/Icelandic; Poland/Polish/Pole; Turkey/Turkish/Turk; Thailand/Thai;
Portugal/Portuguese; Belgium/Belgian; Peru/Peruvian; Cyprus/Cypriot; Czechia/Czech Republic/Czech;
Slovakia/Slovak; Slovenia/Slovene; Serbia/Serb; Croatia/Croat; Lebanon/Lebanese; Philippines/Filipino;
Afghanistan/Afghan; Uzbekistan/Uzbek; Kazakhstan/Kazakh; Tajikistan/Tajik; Kyrgyzstan/Kyrgyz;
Turkmenistan/Turkmen; Madagascar/Malagasy; Monaco/Monegasque; Niger/Nigerien; Ivory Coast/Ivorian;
Myanmar/Burma/Burmese; Laos/Lao/Laotian; Argentina/Argentine; Congo/Congolese; Saudi Arabia/Saudi;
New Zealand/New Zealander; Luxembourg/Luxembourger; Somalia/Somali; Honduras/Honduran; Panama/Panamanian;
El Salvador/Salvadoran; Mozambique/Mozambican; Togo/Togolese; Burkina Faso/Burkinabe; Mauritius/Mauritian;
Seychelles/Seychellois; Maldives/Maldivian; Bahamas/Bahamian; Barbados/Barbadian; Kosovo/Kosovar;
Montenegro/Montenegrin; Greenland/Greenlandic; United Arab Emirates/UAE/Emirati; Eswatini/Swaziland/Swazi;
Botswana/Motswana/Batswana; Lesotho/Basotho; Liechtenstein/Liechtensteiner; San Marino/Sammarinese"""
ALIASES = [tuple(a.strip() for a in group.split("/")) for group in ALIAS_TABLE.split(";")]
ALIAS_GROUP = {alias: n for n, group in enumerate(ALIASES) for alias in group}
ALIAS_PATTERNS = [re.compile(r"\b(?:" + "|".join(re.escape(a) for a in group) + r")s?\b") for group in ALIASES]


class Passages:
    """The cited passages of one check, analysed once: words, stems, acronyms, the words used in
    lower case, and per passage its stems, the text before it and the word pairs of that text."""

    def __init__(
        self, texts: Sequence[str], before: Sequence[Sequence[str]] | None = None, lowercase: Iterable[str] = ()
    ):
        self.texts = [undot(normalise(t)) for t in texts]
        self.before = [[undot(normalise(b)) for b in bs] for bs in (before or [()] * len(self.texts))]
        self.text = " ".join(self.texts)
        self.words = set(words(self.text))
        self.stems = {stem(w) for w in self.words}
        self.acronyms = _acronyms(self.text)
        self.cased = set(cased_words(self.text))
        lower = {w for t in [self.text, *(b for bs in self.before for b in bs)] for w in WORD.findall(t) if w.islower()}
        self.lowercase = {stem(w) for w in lower} | set(lowercase)  # stems of words used in lower case
        self.passage_stems = [{stem(w) for w in words(t)} for t in self.texts]
        self.before_pairs = [{(a, stem(b)) for t in bs for a, b in _pairs(words(t))} for bs in self.before]
        self.sequences = [_sequence(t) for t in self.texts]

    def has_name(self, word: str, claim: str) -> bool:
        """Whether the passages contain the claim's capitalised `word`: as a word or stem, an
        acronym of their names, a country alias or a demonym (not by looser prefix matches)."""
        lower = word.lower()
        acronym = word.isupper() and len(word) >= 2  # matched with its case: "US" is not "us"
        if word in self.cased or (acronym and word in self.acronyms):
            return True
        if not acronym and (lower in self.words or stem(lower) in self.stems):
            return True
        group = ALIAS_GROUP.get(word, ALIAS_GROUP.get(word[:-1]) if word.endswith("s") else None)
        if group is not None and ALIAS_PATTERNS[group].search(self.text):
            return True
        return any(_demonym(lower, w, claim, self.text) for w in self.words if w[:1] == lower[:1])

    def has_word(self, word: str) -> bool:
        """Whether the passages contain the claim's lower-case `word`, or a derivation of it
        ("creator" / "created", one stem a prefix of the other and at most 3 letters longer)."""
        if word in self.words or stem(word) in self.stems:
            return True
        if any(_derivation(word, w) for w in self.words if w[:1] == word[:1]):
            return True
        root = stem(word)
        return len(root) >= 5 and any(_derivation(root, s) for s in self.stems if s[:1] == root[:1] and len(s) >= 5)


def undot(text: str) -> str:
    """'U.S.' -> 'US', so dotted acronyms compare with plain ones."""
    return DOTTED_ACRONYM.sub(lambda m: m.group(0).replace(".", ""), text)


def _pairs(tokens: list[str]) -> list[tuple[str, str]]:
    return list(zip(tokens, tokens[1:], strict=False))


def _sequence(text: str) -> list[str]:
    """The passage's content terms (as `claim_terms`), each sentence between START and END markers."""
    result = []
    for sentence in SENTENCE_END.split(text):
        result += [START, *claim_terms(sentence), END]
    return result


def claim_terms(claim: str) -> list[str]:
    """The claim's content terms (stems): not function words, sentence openers, particles or
    numbers (the number check covers those)."""
    skip = FUNCTION_WORDS | OPENERS | PARTICLES
    return [stem(w) for w in words(claim) if w not in skip and not w[0].isdigit() and w not in NUMBER_WORDS]


def is_name(word: str) -> bool:
    return word[:1].isupper() and word.lower() not in FUNCTION_WORDS


def claim_names(claim: str, passages: Passages) -> list[tuple[int, str]]:
    """(position, word) of the claim's capitalised words (an all-capitals claim has none). The
    first word counts unless it is an opener, a number word, or a word that the document or the
    passages use in lower case (acronyms always count)."""
    cased = cased_words(claim)
    letters = [w for w in cased if w[:1].isalpha()]
    if letters and sum(w.isupper() for w in letters) > len(letters) / 2:
        return []
    return [(i, w) for i, w in enumerate(cased) if is_name(w) and (i > 0 or _first_word_is_name(w, passages))]


def _first_word_is_name(first: str, passages: Passages) -> bool:
    lower = first.lower()
    if lower in OPENERS or lower in NUMBER_WORDS:
        return False
    return (first.isupper() and len(first) > 1) or stem(lower) not in passages.lowercase


def _acronyms(text: str) -> set[str]:
    """Acronyms of the text's multiword names: initials of every run of two or more capitalised
    words, connectors skipped ("Corporation for National Research Initiatives" -> "CNRI", "NRI")."""
    result: set[str] = set()
    run: list[str] = []
    for word in [*cased_words(text), "."]:
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


def _derivation(word: str, other: str) -> bool:
    """One is a prefix of the other, at least 4 letters long and at most 3 letters shorter."""
    short, long = sorted((word, other), key=len)
    return len(short) >= 4 and long.startswith(short) and len(long) - len(short) <= 3


def demonym_pair(short: str, long: str) -> bool:
    """Whether lower-case `long` is `short` (or it without a final vowel) with a demonym ending,
    or the plural of one ("kenya"/"kenyan", "italy"/"italian", "kenya"/"kenyans")."""
    if len(short) < 4 or len(long) <= len(short):
        return False
    bases = {short, short[:-1]} if short[-1] in "aeiouy" else {short}
    forms = {long, long[:-1]} if long.endswith("s") else {long}
    return any(f.startswith(b) and f[len(b) :] in DEMONYM_ENDINGS for b in bases for f in forms)


def _demonym(word: str, other: str, claim: str, support: str) -> bool:
    """Whether lower-case `word` (of the claim) and `other` (of the passages) are a place and its
    demonym, the demonym used as an adjective or plural noun where it occurs."""
    short, long = sorted((word, other), key=len)
    if not demonym_pair(short, long):
        return False
    context = claim if long == word else support
    form = long[:1].upper() + long[1:]
    if long.endswith("s") and re.search(rf"\b{re.escape(form)}\b", context):
        return True  # "Kenyans"
    for m in re.finditer(rf"\b{re.escape(form)}(?:-\w|\s+([a-z]\w*))", context):
        follower = m.group(1)
        if follower is None or not (follower in NOT_ADJECTIVE_AFTER or follower.endswith("ed")):
            return True
    return False


def name_support(claim: str, passages: Passages) -> dict[int, bool]:
    """Whether the passages support each of the claim's names, by position (see the module docstring)."""
    cased = cased_words(claim)
    covered = _acronym_groups(cased, passages.cased)
    return {
        i: i in covered or passages.has_name(word, claim) or _referred_to(i, cased, passages)
        for i, word in claim_names(claim, passages)
    }


def unsupported_names(claim: str, passages: Passages, names: dict[int, bool] | None = None) -> list[str]:
    """The claim's capitalised words that the passages do not support (`names`: its `name_support`)."""
    claim = undot(claim)
    names = name_support(claim, passages) if names is None else names
    cased = cased_words(claim)
    return [cased[i] for i, supported in names.items() if not supported]


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


def _referred_to(i: int, cased: list[str], passages: Passages) -> bool:
    """Whether claim word `i` names what one of the passages refers to: it is attached to a word of
    that passage and the text before that passage has the same pair ("Trump administration" for
    "the administration"), or that passage opens with a pronoun and the sentence before it has
    the name."""
    word = cased[i].lower()
    neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(cased) and cased[j].lower() not in FUNCTION_WORDS]
    for text, before, stems, pairs in zip(
        passages.texts, passages.before, passages.passage_stems, passages.before_pairs, strict=True
    ):
        if before and PRONOUN_OPENING.match(text) and word in set(words(before[0])):
            return True
        for j in neighbours:
            other = cased[j].lower()
            if stem(other) in stems and ((word, stem(other)) if j > i else (other, stem(word))) in pairs:
                return True
    return False


def found_terms(claim: str, passages: Passages, names: dict[int, bool] | None = None) -> set[str]:
    """The claim's content terms that the passages support (names by the name rules, `names` its
    `name_support`; other words directly or as derivations)."""
    names = name_support(claim, passages) if names is None else names
    found = set()
    for i, word in enumerate(cased_words(claim)):
        w = word.lower()
        if w not in FUNCTION_WORDS and (names[i] if i in names else passages.has_word(w)):
            found.add(stem(w))
    return found


def _numbers(text: str, counts_one: bool = False) -> set[str]:
    """Numbers in the text, as digits: "1,000" -> "1000", "two" -> "2", "1990s" -> "1990". "one"
    is 1 anywhere when `counts_one` (the passages), else only before a word that is not a
    function word ("one soldier", not "one of them", "the one who", "one another")."""
    found = {n.replace(",", "") if re.fullmatch(r"\d{1,3}(?:,\d{3})+", n) else n for n in NUMBER.findall(text)}
    tokens = [t.lower() for t in TOKEN.findall(text)]
    for k, w in enumerate(tokens):
        if w == "one" and not counts_one:
            previous, following = tokens[k - 1] if k else "", tokens[k + 1] if k + 1 < len(tokens) else ""
            counted = following[:1].isalnum() and following not in FUNCTION_WORDS | PRONOUN_ONE_AFTER
            if not counted or previous in PRONOUN_ONE_BEFORE:
                continue
        if w in NUMBER_WORDS:
            found.add(NUMBER_WORDS[w])
    return found


def unsupported_numbers(claim: str, support: str) -> list[str]:
    """The claim's numbers that the passages do not state."""
    return sorted(_numbers(claim) - _numbers(support, counts_one=True))


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
