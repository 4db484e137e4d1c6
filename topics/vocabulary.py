"""The words topics are described by: English and Spanish stopwords, the district's own name,
and no email addresses, phone numbers or links (never shown on a word cloud)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

from core.settings import DATA_DIR, Settings

STOPWORDS_DIR = DATA_DIR / "stopwords"
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(\.[\w-]+)+\b")
URL = re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE)
PHONE = re.compile(r"(?:\+?\d[\s().-]*){7,}")
TOKEN_PATTERN = r"(?u)\b[^\W\d_]{3,}\b"  # words of 3+ letters: no numbers, no "ok", no "de"


@lru_cache(maxsize=1)
def _spanish() -> frozenset[str]:
    return frozenset((STOPWORDS_DIR / "es.txt").read_text(encoding="utf-8").split())


def stopwords(settings: Settings) -> list[str]:
    """English and Spanish stopwords, the district's name and the configured extra words."""
    district = settings.district_name.casefold().split()
    extra = [w.strip().casefold() for w in settings.extra_stopwords.split(",") if w.strip()]
    return sorted(set(ENGLISH_STOP_WORDS) | _spanish() | set(district) | set(extra))


def scrub(text: str) -> str:
    """``text`` without email addresses, links and phone numbers, lowercased."""
    return PHONE.sub(" ", URL.sub(" ", EMAIL.sub(" ", text))).lower()


def make_vectorizer(settings: Settings, min_df: int | float = 2) -> CountVectorizer:
    """The CountVectorizer BERTopic's c-TF-IDF and the word clouds count words with."""
    return CountVectorizer(
        preprocessor=scrub,
        token_pattern=TOKEN_PATTERN,
        stop_words=stopwords(settings),
        min_df=min_df,
    )


def auto_label(words: Sequence[tuple[str, float]], n: int = 3) -> str:
    """A readable label from a topic's top words, e.g. ``"bus · late · route"``."""
    return " · ".join(word for word, _ in words[:n]) or "(no words)"
