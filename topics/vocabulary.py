"""The words topics are described by.

English and Spanish stopwords, the district's own name, merged word forms (bully / bullies /
bullying -> one word, shown as the form people wrote most), and never an email address, phone
number, link or a person's name. Every place that counts words uses :func:`make_vectorizer`.

Names are kept out three ways: the lists in ``data/names`` (first names and surnames), words
after a title, greeting or family word ("Ms. Johnson", "Coach Rivera", "mi hija Valentina",
"Thanks, Dana"), and a capitalised-token heuristic: a word written with a capital in the middle
of a sentence more often than in lowercase, that is no known word, school or topic word.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

from core.settings import DATA_DIR, Settings

STOPWORDS_DIR = DATA_DIR / "stopwords"
NAMES_DIR = DATA_DIR / "names"

EMAIL = re.compile(r"(?:mailto:)?[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)
URL = re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE)
HANDLE = re.compile(r"(?<![\w.])@\w[\w.]*")  # @ana_perez: an account is a person's name
# A bare domain or link without scheme: example.org, mvsd.k12.us/lunch, bit.ly/x
DOMAIN = re.compile(
    r"\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|edu|gov|us|io|info|co|mx|es|ly|me|app|gl)\b(?:/\S*)?",
    re.IGNORECASE,
)
PHONE = re.compile(r"(?:\+?\d[\s().-]*){7,}")
TOKEN_PATTERN = r"(?u)\b[^\W\d_]{3,}\b"  # words of 3+ letters: no numbers, no "ok", no "de"
MIN_LETTERS = 3

# Anything word-like, with a leading @ (a handle: dropped) or # (a hashtag: kept as a word).
_WORD = re.compile(r"@[\w.]+|\w*_\w*|#?[^\W_]+(?:['’][^\W_]+)*")  # handles, user_names, words
# Greetings whose words would otherwise read as topic words ("buenas tardes": tarde = late).
GREETINGS = re.compile(
    r"\b(?:buen[oa]s\s+(?:d[ií]as|tardes|noches)|good\s+(?:morning|afternoon|evening|night))\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.!?¡¿…:;\n]")
_POSSESSIVE = frozenset(["'s", "’s", "'S", "’S"])


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


# After these (abbreviated honorifics) the next word is a name even in lowercase ("mr bennett").
HONORIFICS = _set("mr mrs ms mx dr sr sra srta sres prof profa lic ing")
# Sign-offs: the name after them may start a new line ("Thank you,\nMelissa").
CLOSINGS = _set("thanks you regards sincerely cheers best atentamente saludos cordialmente gracias")
# After these, a following capitalised word is a name ("Coach Rivera", "mi hija Valentina").
NAME_TRIGGERS = CLOSINGS | _set(
    """
    coach maestra maestro maestras maestros profe profesor profesora miss missus mister
    principal nurse officer counselor superintendent director directora teacher doctor doctora
    señor señora señorita senor senora senorita don doña dona tío tía abuela abuelo
    son sons daughter daughters kid kids child children grandson granddaughter stepson
    stepdaughter nephew niece brother sister husband wife boy girl
    hijo hija hijos hijas nieto nieta sobrino sobrina hermano hermana niño niña esposo esposa
    hi hello hey dear hola estimado estimada querido querida thank
    soy llamo named called name nombre
    """
)
IS = ("is", "es")
# Particles inside names: "Sra. de la Cruz", "Mr. Van Buren".
PARTICLES = _set("de del la las los van von da di le mc y")
# The district's initials plus these are its own name too: MVSD, MVUSD, MVHS.
ACRONYM_SUFFIXES = ("", "sd", "usd", "isd", "cisd", "ps", "cs", "hs", "ms", "es", "schools")
_FOLD = str.maketrans("áàâäéèêëíìîïóòôöúùûü", "aaaaeeeeiiiioooouuuu")


@lru_cache(maxsize=1)
def _spanish() -> frozenset[str]:
    return frozenset((STOPWORDS_DIR / "es.txt").read_text(encoding="utf-8").split())


def _word_list(path: Path) -> frozenset[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return frozenset(fold(line.strip()) for line in lines if line.strip() and line[0] != "#")


@lru_cache(maxsize=1)
def _chat() -> frozenset[str]:
    return _word_list(STOPWORDS_DIR / "chat.txt")


@lru_cache(maxsize=1)
def person_names() -> frozenset[str]:
    """The shipped first names and surnames, folded (lowercase, no accents)."""
    return _word_list(NAMES_DIR / "first_names.txt") | _word_list(NAMES_DIR / "surnames.txt")


@lru_cache(maxsize=1)
def not_names() -> frozenset[str]:
    """Capitalised words that are not names (days, months, languages, apps, offices)."""
    return _word_list(NAMES_DIR / "not_names.txt")


def stopwords(settings: Settings) -> list[str]:
    """English and Spanish stopwords, the district's name and the configured extra words."""
    district = settings.district_name.casefold().split()
    initials = "".join(w[0] for w in district)  # "mv": #mvsd, MVHS
    acronyms = {initials + suffix for suffix in ACRONYM_SUFFIXES} if len(initials) > 1 else set()
    acronyms |= {"".join(district) + suffix for suffix in ACRONYM_SUFFIXES}  # #MapleValleySD
    extra = [w.strip().casefold() for w in settings.extra_stopwords.split(",") if w.strip()]
    words = set(ENGLISH_STOP_WORDS) | _spanish() | _chat() | set(district) | acronyms | set(extra)
    return sorted(words | HONORIFICS)


def strip_pii(text: str) -> str:
    """``text`` without email addresses, links, @handles and phone numbers (case kept)."""
    text = EMAIL.sub(" ", text)
    text = URL.sub(" ", text)
    text = DOMAIN.sub(" ", text)
    text = HANDLE.sub(" ", text)
    return PHONE.sub(" ", text)


def scrub(text: str) -> str:
    """``text`` without email addresses, links, @handles and phone numbers, lowercased."""
    return strip_pii(text).lower()


@lru_cache(maxsize=200_000)
def fold(word: str) -> str:
    """``word`` lowercased without accents (ñ kept): the form lists are matched on."""
    return word.lower().translate(_FOLD)


def _undouble(stem: str) -> str:
    if len(stem) > 3 and stem[-1] == stem[-2] and stem[-1] not in "lsz":
        return stem[:-1]
    return stem


@lru_cache(maxsize=100_000)
def stem(word: str) -> str:
    """A light English + Spanish suffix stripper: the key merged word forms share.

    bully, bullies, bullied, bullying -> ``bully``; bus, buses -> ``bus``; autobús, autobuses ->
    ``autobus``; maestra, maestro, maestros -> ``maestr``. Keys are never shown: a group is shown
    as its most frequent real word.
    """
    w = fold(word)
    if len(w) <= MIN_LETTERS:
        return w
    if w.endswith(("ies", "ied")) and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith(("sses", "ches", "shes", "xes", "zes", "ses")) or (
        w.endswith("es") and w[-3] in "lnrdjy"
    ):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    if w.endswith("ing") and len(w) - 3 >= MIN_LETTERS:
        w = _undouble(w[:-3])
    elif w.endswith("ed") and len(w) - 2 >= MIN_LETTERS:
        w = _undouble(w[:-2])
    if w[-1] in "aeo" and len(w) - 1 >= MIN_LETTERS:
        w = w[:-1]
    return w


@dataclass(frozen=True, slots=True)
class _Token:
    text: str  # as written
    lower: str
    starts_sentence: bool
    after_break: bool  # a sentence end or line break separates it from the previous token
    after_newline: bool
    hashtag: bool
    word: bool  # letters only (no digits, no handle, no contraction)


class _Candidate(NamedTuple):
    lower: str
    folded: str
    by_rule: bool  # a name by the lists or its context
    name_like: bool  # capitalised, not at a sentence start, not a hashtag
    plain: bool  # written in lowercase


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    previous_end = 0
    for match in _WORD.finditer(text):
        raw = match.group()
        gap = text[previous_end : match.start()]
        previous_end = match.end()
        broken = not tokens or (gap != " " and bool(_SENTENCE_END.search(gap)))
        hashtag = raw[0] == "#"
        if hashtag:
            raw = raw[1:]
        if raw[-2:] in _POSSESSIVE:
            raw = raw[:-2]
        lower = raw.lower()
        starts = broken and not (tokens and tokens[-1].lower in HONORIFICS and gap.strip() == ".")
        newline = not tokens or "\n" in gap
        # letters only: no digits, no @handle or user_name, no contraction (don't, I'm)
        tokens.append(_Token(raw, lower, starts, broken, newline, hashtag, raw.isalpha()))
    return tokens


def _capitalised(token: _Token) -> bool:
    text = token.text
    return text[:1].isupper() and (len(text) == 1 or not text[1:].isupper())


def _names_in_context(tokens: list[_Token]) -> set[int]:
    """Positions of words that are names by their context: after a title, greeting, family word
    or closing, and capitalised words on a short last line (a signature)."""
    names: set[int] = set()
    for i, token in enumerate(tokens):
        strong = token.lower in HONORIFICS
        if not (strong or token.lower in NAME_TRIGGERS):
            continue
        j = i + 1
        if token.lower in ("name", "nombre") and tokens[j : j + 1] and tokens[j].lower in IS:
            j += 1
        first = True
        while j < len(tokens):
            candidate = tokens[j]
            closing = token.lower in CLOSINGS
            if candidate.after_break and not (first and (strong or closing)):
                break
            if candidate.lower in PARTICLES:
                k = j
                while k < len(tokens) and tokens[k].lower in PARTICLES:
                    k += 1
                if k < len(tokens) and _capitalised(tokens[k]) and not tokens[k].after_break:
                    j = k
                    continue
                break
            lowercase_name = first and strong and candidate.word
            if not (candidate.word and (_capitalised(candidate) or lowercase_name)):
                break
            names.add(j)
            first = False
            j += 1
    last_line = [i for i, t in enumerate(tokens) if t.after_newline][-1:] or [0]
    tail = range(last_line[0], len(tokens))
    if len(tokens) > len(tail) and len(tail) <= 3:
        names.update(i for i in tail if tokens[i].word and _capitalised(tokens[i]))
    return names


class Analyzer:
    """Turns a message into the words it is counted by (a CountVectorizer ``analyzer``).

    :meth:`learn` reads a corpus first: which capitalised words are names there, and which
    written form shows each merged word. Without it, words show in their stemmed group's
    first-seen form and only the lists and context rules find names.
    """

    def __init__(
        self,
        stop_words: Iterable[str],
        schools: Iterable[str] = (),
        known_words: Iterable[str] = (),
    ) -> None:
        self.stop_words = frozenset(fold(w) for w in stop_words)
        self.school_words = frozenset(fold(w) for s in schools for w in _words(s))
        known = {fold(w) for w in known_words} | not_names() | self.school_words
        known |= {fold(w) for w in NAME_TRIGGERS | HONORIFICS}
        self.known_stems = frozenset(stem(w) for w in known)
        self.learned_names: frozenset[str] = frozenset()
        self.display: dict[str, str] = {}
        self._memo: dict[str, list[_Candidate]] = {}

    def _is_name_word(self, folded: str) -> bool:
        return folded in person_names() and folded not in self.school_words

    def _candidates(self, document: str) -> list[_Candidate]:
        """The countable words of ``document`` (no stopwords, no short words), with what the
        name rules need to know about each."""
        if (memo := self._memo.get(document)) is not None:
            return memo
        tokens = _tokens(GREETINGS.sub(" hello ", strip_pii(document)))
        context = _names_in_context(tokens)
        candidates = []
        for i, token in enumerate(tokens):
            if not token.word or len(token.lower) < MIN_LETTERS:
                continue
            folded = fold(token.lower)
            if folded in self.stop_words:
                continue
            by_rule = i in context or self._is_name_word(folded)
            name_like = not token.starts_sentence and not token.hashtag and _capitalised(token)
            candidates.append(
                _Candidate(token.lower, folded, by_rule, name_like, token.text.islower())
            )
        return candidates

    def learn(self, documents: Sequence[str]) -> None:
        """Learn the names (capitalised mid-sentence more often than not) and display forms.

        Keeps each document's words until :meth:`forget`, so counting them next is cheap.
        """
        name_uses: Counter[str] = Counter()
        plain_uses: Counter[str] = Counter()
        self._memo = {}
        for document in documents:
            self._memo[document] = candidates = self._candidates(document)
            for word in candidates:
                if word.by_rule or word.name_like:
                    name_uses[word.folded] += 1
                elif word.plain:
                    plain_uses[word.folded] += 1
        self.learned_names = frozenset(
            w for w, n in name_uses.items() if n > plain_uses[w] and stem(w) not in self.known_stems
        )
        forms: dict[str, Counter[str]] = defaultdict(Counter)
        for candidates in self._memo.values():
            for word in candidates:
                if not word.by_rule and word.folded not in self.learned_names:
                    forms[stem(word.lower)][word.lower] += 1
        self.display = {
            key: min(counts, key=lambda w: (-counts[w], len(w), w)) for key, counts in forms.items()
        }

    def forget(self) -> None:
        """Drop the documents kept by :meth:`learn` (what was learned stays)."""
        self._memo = {}

    def __call__(self, document: str) -> list[str]:
        return [
            self.display.get(stem(word.lower), word.lower)
            for word in self._candidates(document)
            if not word.by_rule and word.folded not in self.learned_names
        ]


def _words(text: str) -> list[str]:
    return [m.group() for m in re.finditer(TOKEN_PATTERN, text)]


class WordCounter(CountVectorizer):
    """A CountVectorizer whose :class:`Analyzer` learns names and word forms when fitted."""

    def fit_transform(self, raw_documents: Iterable[str], y: object = None) -> np.ndarray:
        documents = list(raw_documents)
        if not isinstance(self.analyzer, Analyzer):
            return super().fit_transform(documents)
        self.analyzer.learn(documents)
        try:
            return super().fit_transform(documents)
        finally:
            self.analyzer.forget()


def make_vectorizer(
    settings: Settings,
    min_df: int | float = 2,
    *,
    schools: Iterable[str] = (),
    known_words: Iterable[str] = (),
) -> CountVectorizer:
    """The CountVectorizer BERTopic's c-TF-IDF and the word clouds count words with.

    ``schools`` (school names) and ``known_words`` (e.g. topic words) are never taken for
    people's names by the capitalised-word heuristic; the taxonomy's seed words never are.
    """
    from topics.taxonomy import TAXONOMY  # a plain dict; imported late to keep imports acyclic

    seeds = [w for words in TAXONOMY.values() for w in words]
    analyzer = Analyzer(stopwords(settings), schools, [*seeds, *known_words])
    return WordCounter(analyzer=analyzer, min_df=min_df)


def auto_label(words: Sequence[tuple[str, float]], n: int = 3) -> str:
    """A readable label from a topic's top words, e.g. ``"bus · late · route"``.

    Forms of one word count once (``bus`` and ``buses`` never both appear).
    """
    chosen: list[str] = []
    seen: set[str] = set()
    for word, _ in words:
        key = stem(word)
        if key in seen or not word.strip():
            continue
        seen.add(key)
        chosen.append(word)
        if len(chosen) == n:
            break
    return " · ".join(chosen) or "(no words)"
