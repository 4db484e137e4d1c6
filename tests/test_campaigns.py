"""Copy-paste campaigns and forwarded texts are grouped; unrelated messages are not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from test_runner import ListSource

from core.campaigns import MAX_DISTANCE, campaigns, group_near_duplicates, hamming
from ingestion.normalize import content_hash, near_hash
from ingestion.runner import sync_source

LETTER = (
    "Dear School Board, I am writing to oppose the proposal to close Riverside Elementary. "
    "The school is the heart of our neighbourhood, children walk there safely, and moving them "
    "across the highway to Oak Park would add forty minutes of busing every day. Please vote no "
    "at Tuesday's meeting and look for savings elsewhere in the central office budget."
)


def test_near_hash_is_close_for_edited_copies_and_far_for_other_texts():
    signed = near_hash(LETTER + " Sincerely, Maria")
    other_signature = near_hash(LETTER + " Thank you, Dwayne")
    unrelated = near_hash("Bus 14 was forty minutes late again this morning, nobody called us.")
    assert hamming(signed, other_signature) <= MAX_DISTANCE
    assert hamming(signed, unrelated) > 2 * MAX_DISTANCE
    assert -(2**63) <= signed < 2**63  # fits a signed BIGINT


def test_groups_join_identical_and_near_identical_texts():
    texts = (
        [LETTER] * 5
        + [LETTER.upper(), LETTER + " Sincerely, Maria", LETTER.replace("forty", "40")]
        + ["When do report cards come out?", "Is school closed tomorrow?"]
    )
    rows = [(i, content_hash(t), near_hash(t)) for i, t in enumerate(texts)]
    groups = group_near_duplicates(rows)
    assert sorted(groups[0]) == list(range(8))
    assert sorted(map(len, groups)) == [1, 1, 8]


def test_campaigns_reports_size_and_how_many_are_word_for_word(db_engine, settings):
    bodies = [LETTER] * 6 + [f"{LETTER} Signed, parent #{i}" for i in range(3)]
    bodies += [f"Question {i}: when does the {i}th grade field trip leave?" for i in range(4)]
    sync_source(db_engine, ListSource(bodies), settings)
    t0 = datetime(2026, 3, 2, tzinfo=UTC)
    (campaign,) = campaigns(db_engine, t0, t0 + timedelta(days=1))
    assert (campaign.size, campaign.identical) == (9, 6)
    assert campaigns(db_engine, t0 + timedelta(days=1), t0 + timedelta(days=2)) == []
