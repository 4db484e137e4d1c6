"""Spike detection: pure functions over hourly topic counts (``topic_counts``), no database.

For each topic, an expected count per hour comes from a seasonal baseline: the mean of the
same cell (day type — school day, weekend, break — × local hour) over the last
``history_weeks`` weeks, ending ``guard_hours`` before now so a rise that is still going on is
not learned as normal. History hours far above their baseline (past spikes) are down-weighted
as in the improved Farrington method, and each cell is shrunk toward a prior — the topic's share
of all messages × the district's expected volume in that cell — so sparse and new topics get a
sensible baseline. Days with a known calendar event are never learned from.

Each evaluation tests the last 1, 3 and 24 complete hours: a negative-binomial upper tail
(dispersion estimated per topic and window by the method of moments, Poisson when there is no
overdispersion) below ``alpha``, AND a minimum count, a minimum excess over expected AND a
minimum ratio. The minimum excess keeps the 1-hour window, which gets most of the budget, from
spending it on topics that usually see about one message an hour: 7 messages against 1
expected is improbable but not what the issue calls a burst (+10 messages an hour). When the whole
district is surging (a snow day), the expected counts are scaled by the district factor (the
volume-weighted median of the other topics' observed/expected ratios), so only topics whose
share rose fire. A Poisson CUSUM over the guard period catches sustained rises the windows miss; its
log-likelihood ratios are divided by the variance/mean of the topic's daily counts
(quasi-Poisson), so ordinary day-to-day swings do not add up to an alarm.

The sensitivity (low / balanced / high) is a budget of false alert emails per week for the
whole district; each window's ``alpha`` and the CUSUM threshold spend a share of it over the
week's tests (see :func:`thresholds`). Most of it goes to the 1-hour window: a burst is over
within the hour, and catching it at the first evaluation that sees it is the point of alerting;
the longer windows and the CUSUM watch sustained rises, which are also seen later and by more
tests. Signals are per evaluation; an alert engine adds the pending period for weak signals: a
topic fires when it signals at two consecutive evaluations, or at once for a signal marked
``immediate``. A 1-hour window's signal is always immediate (the next evaluation sees another
hour, so a one-hour burst could never persist), as is a CUSUM alarm (it already needed a
sustained rise) and a longer window's p-value under ``alpha × immediate_factor``. Only complete
hours count, so evaluating once an hour, just after the hour, sees every change; more often
repeats the same signals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from scipy import stats
from sqlalchemy import Engine, func, select

from alerts.calendar import DAY_TYPES, SchoolCalendar
from core.db import read_session
from core.models import TopicCount

WINDOWS = (1, 3, 24)  # hours
SENSITIVITIES = {"low": 0.25, "balanced": 1.0, "high": 4.0}  # false alerts per week, district
HOURS_PER_WEEK = 168
N_CELLS = len(DAY_TYPES) * 24
# When a day type has no history, borrow the same hour of these day types, in order.
BORROW = {
    "school_day": ("weekend", "break"),
    "weekend": ("break", "school_day"),
    "break": ("weekend", "school_day"),
}
MIN_EXPECTED = 1e-3  # messages per hour: no cell expects exactly nothing
POISSON_BELOW = 1e-4  # dispersion under this is treated as Poisson
MAX_DISPERSION = 2.0


@dataclass(frozen=True)
class SpikeConfig:
    """Tuning of spike detection; the defaults are calibrated by ``benchmarks/bench_alerts.py``."""

    history_weeks: int = 8
    guard_hours: int = 72  # the baseline ends this long before now; the CUSUM runs over it
    min_age_hours: int = 48  # younger topics are left to emerging-topic detection
    min_count: Mapping[int, int] = field(default_factory=lambda: {1: 6, 3: 10, 24: 24})
    min_ratio: Mapping[int, float] = field(default_factory=lambda: {1: 2.0, 3: 1.75, 24: 1.5})
    min_excess: Mapping[int, float] = field(default_factory=lambda: {1: 8.0, 3: 0.0, 24: 0.0})
    prior_weight: float = 4.0  # pseudo-observations of the share-based prior in each cell
    downweight_above: float = 2.58  # Anscombe residual above which history is down-weighted
    surge_min: float = 1.25  # district factors below this are treated as no surge
    surge_alpha: float = 1e-3  # ... and so is a district total not this significantly high
    cusum_shift: float = 1.5  # the CUSUM is tuned to detect a rise to this × expected
    # Shares of the false-alarm budget: each window's test, and the CUSUM (the rest).
    window_budget_share: Mapping[int, float] = field(
        default_factory=lambda: {1: 0.7, 3: 0.1, 24: 0.05}
    )
    immediate_windows: tuple[int, ...] = (1,)  # their signals fire without a pending period
    immediate_factor: float = 0.3  # ... and so does a p-value under alpha × this
    # Bonferroni over every test is conservative here (most tests cannot pass the count,
    # excess and ratio minimums, windows overlap, the pending period filters), so the nominal
    # budget is scaled by this; with it bench_alerts.py measured 0.81 false alert emails a
    # week at balanced (budget 1) on 64 event-free district-weeks.
    budget_calibration: float = 1.5
    evaluations_per_week: int = HOURS_PER_WEEK  # tests count once per complete hour


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds for one sensitivity and district size."""

    alpha: Mapping[int, float]  # per window hours: a signal has a p-value below this
    immediate: Mapping[int, float]  # per window: below this an engine may skip pending
    cusum_h: float  # CUSUM decision interval, in log-likelihood-ratio units


@dataclass(frozen=True)
class SpikeResult:
    """The outcome of one window's test."""

    p_value: float
    fire: bool
    observed: float
    expected: float
    ratio: float


@dataclass(frozen=True)
class SpikeSignal:
    """A topic whose count is significantly above expectation at this evaluation."""

    topic_id: int
    window: int  # hours (for a CUSUM: the length of the rise so far)
    observed: float
    expected: float  # already scaled by the district factor when share_based
    p_value: float
    ratio: float
    kind: str  # "burst" (a window's test) or "cusum" (a sustained rise)
    share_based: bool  # the district was surging: the topic was judged on its share
    immediate: bool  # strong enough to fire without a pending period (always for a CUSUM)


@dataclass(frozen=True)
class Baseline:
    """A fitted baseline: hourly observed and expected counts for ``hours`` × ``topics``."""

    topics: np.ndarray  # topic ids, (T,)
    hours: pd.DatetimeIndex  # UTC hour starts: history, then the guard period, (H,)
    observed: np.ndarray  # (H, T)
    expected: np.ndarray  # (H, T), from the cell means
    dispersion: dict[int, np.ndarray]  # window hours -> (T,)
    born: np.ndarray  # (T,) index into ``hours`` of each topic's first message (may be < 0)

    def dispersion_for(self, hours: int) -> np.ndarray:
        """The dispersion of the longest configured window not longer than ``hours``."""
        return self.dispersion[max(w for w in self.dispersion if w <= max(hours, min(WINDOWS)))]


def thresholds(sensitivity: str, n_topics: int, config: SpikeConfig | None = None) -> Thresholds:
    """Thresholds spending the sensitivity's weekly false-alarm budget (for the whole
    district) over the week's tests: each window's share over topics × evaluations per week,
    the rest on the CUSUM."""
    config = config or SpikeConfig()
    if sensitivity not in SENSITIVITIES:
        raise ValueError(f"sensitivity {sensitivity!r}: use one of {', '.join(SENSITIVITIES)}")
    shares = config.window_budget_share
    if set(shares) != set(WINDOWS) or not 0 < sum(shares.values()) < 1:
        raise ValueError(
            f"window_budget_share {dict(shares)}: give a share for each window {WINDOWS}, "
            "summing to less than 1 (the rest is the CUSUM's)"
        )
    budget = SENSITIVITIES[sensitivity] * config.budget_calibration
    topic_hours = max(n_topics, 1) * config.evaluations_per_week
    alpha = {window: budget * shares[window] / topic_hours for window in WINDOWS}
    immediate = {
        window: alpha[window]
        * (1 if window in config.immediate_windows else config.immediate_factor)
        for window in WINDOWS
    }
    # A CUSUM of log-likelihood ratios with threshold h runs at least e^h steps between false
    # alarms; topic_hours / ARL is then its false alarms per week.
    cusum_h = math.log(topic_hours / (budget * (1 - sum(shares.values()))))
    return Thresholds(alpha, immediate, cusum_h)


def load_counts(engine: Engine, since: datetime, until: datetime | None = None) -> pd.DataFrame:
    """Hourly counts per topic from ``topic_counts`` (source kinds and schools summed)."""
    with read_session(engine) as session:
        query = select(TopicCount.topic_id, TopicCount.bucket_start, func.sum(TopicCount.n))
        query = query.where(TopicCount.bucket_start >= since)
        if until is not None:
            query = query.where(TopicCount.bucket_start < until)
        rows = session.execute(query.group_by(TopicCount.topic_id, TopicCount.bucket_start))
        frame = pd.DataFrame(rows.all(), columns=["topic_id", "bucket_start", "n"])
    frame["bucket_start"] = pd.to_datetime(frame["bucket_start"], utc=True)
    return frame.astype({"topic_id": "int64", "n": "int64"})


def fit_baseline(
    counts: pd.DataFrame,
    now: datetime,
    calendar: SchoolCalendar,
    tz: ZoneInfo | str,
    config: SpikeConfig | None = None,
) -> Baseline:
    """Fit the seasonal baseline of every topic in ``counts`` (columns ``topic_id``,
    ``bucket_start`` UTC hour, ``n``; other columns are ignored, rows of a cell are summed) for
    the complete hours before ``now``."""
    config = config or SpikeConfig()
    end = pd.Timestamp(now).tz_convert(UTC).floor("h")
    n_history = config.history_weeks * HOURS_PER_WEEK
    start = end - pd.Timedelta(hours=n_history + config.guard_hours)
    hours = pd.date_range(start, end, freq="h", inclusive="left")
    observed, topics, born = _wide(counts, start, end)
    cells, ordinary = _cells(hours, calendar, tz)

    alive = np.arange(len(hours))[:, None] >= born[None, :]
    history = slice(0, n_history)
    learn = alive[history] & ordinary[history, None]
    total = observed.sum(axis=1, keepdims=True)
    total_means, _ = _cell_means(
        total[history], cells[history], learn.any(axis=1, keepdims=True), None, config
    )
    _borrow(total_means)
    # The topic's share of all messages over its life, up to a day before now.
    early = alive[:-24] & ordinary[:-24, None]
    share = (observed[:-24] * early).sum(axis=0) / np.maximum((total[:-24] * early).sum(0), 1)
    means, weights = _cell_means(
        observed[history], cells[history], learn, share[None, :] * total_means, config
    )
    expected = means[cells]
    dispersion = {
        window: _dispersion(observed[history], expected[history], weights, window)
        for window in WINDOWS
    }
    return Baseline(topics, hours, observed, expected, dispersion, born)


def expected_counts(
    history: pd.DataFrame,
    topic: int,
    now: datetime,
    window: int,
    *,
    calendar: SchoolCalendar,
    tz: ZoneInfo | str,
    config: SpikeConfig | None = None,
) -> float:
    """The baseline's expected count of ``topic`` in the ``window`` complete hours before
    ``now`` (not scaled by any district surge)."""
    baseline = fit_baseline(history, now, calendar, tz, config)
    column = np.flatnonzero(baseline.topics == topic)
    if column.size == 0:
        raise KeyError(f"topic {topic} has no counts before {now}")
    return float(baseline.expected[-window:, column[0]].sum())


def test_spike(
    observed: float,
    expected: float,
    dispersion: float,
    min_count: int,
    min_ratio: float,
    alpha: float,
    min_excess: float = 0.0,
) -> SpikeResult:
    """Test one window: upper-tail p-value below ``alpha``; count, excess over expected and
    ratio at their minimums."""
    p_value, ratio, fire = _window_test(
        np.array([observed]),
        np.array([expected]),
        np.array([dispersion]),
        min_count,
        min_ratio,
        alpha,
        min_excess,
    )
    return SpikeResult(float(p_value[0]), bool(fire[0]), observed, expected, float(ratio[0]))


def upper_tail(observed: np.ndarray, expected: np.ndarray, dispersion: np.ndarray) -> np.ndarray:
    """P(X ≥ observed) for X negative-binomial with mean ``expected`` and variance
    ``expected + dispersion × expected²`` (Poisson where the dispersion is ~0)."""
    mean = np.maximum(expected, MIN_EXPECTED)
    phi = np.maximum(dispersion, POISSON_BELOW)
    negative_binomial = stats.nbinom.sf(observed - 1, 1 / phi, 1 / (1 + phi * mean))
    return np.where(
        dispersion < POISSON_BELOW, stats.poisson.sf(observed - 1, mean), negative_binomial
    )


def cusum(
    observed: np.ndarray, expected: np.ndarray, shift: float, h: float, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson CUSUM for a rise to ``shift`` × expected, reset to 0 on each alarm.

    ``observed`` and ``expected`` are (hours, topics); each hour adds its log-likelihood ratio
    divided by ``scale`` (quasi-Poisson: the counts' variance / mean). Returns the alarms
    (hours, topics) and, per topic, the index of the hour where the last run began.
    """
    increments = (observed * math.log(shift) - (shift - 1) * expected) / scale
    statistic = np.zeros(observed.shape[1])
    began = np.zeros(observed.shape[1], dtype=int)
    alarms = np.zeros(observed.shape, dtype=bool)
    for row, increment in enumerate(increments):
        statistic = np.maximum(statistic + increment, 0.0)
        began = np.where(statistic == 0.0, row + 1, began)
        alarms[row] = statistic > h
        if row < len(increments) - 1:
            statistic = np.where(alarms[row], 0.0, statistic)
            began = np.where(alarms[row], row + 1, began)
    return alarms, began


def district_factor(observed: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Per row, the expected-weighted median of the topics' observed/expected ratios: how many
    times its usual volume the district as a whole is receiving."""
    ratio = observed / np.maximum(expected, MIN_EXPECTED)
    order = np.argsort(ratio, axis=-1)
    ratio = np.take_along_axis(ratio, order, axis=-1)
    weight = np.cumsum(np.take_along_axis(expected, order, axis=-1), axis=-1)
    middle = (weight < weight[..., -1:] / 2).sum(axis=-1, keepdims=True)
    return np.take_along_axis(ratio, np.minimum(middle, ratio.shape[-1] - 1), axis=-1)[..., 0]


def evaluate(
    counts: pd.DataFrame,
    now: datetime,
    calendar: SchoolCalendar,
    sensitivity: str,
    tz: ZoneInfo | str,
    config: SpikeConfig | None = None,
) -> list[SpikeSignal]:
    """Every spike signal at ``now``: window tests (1, 3, 24 h) and CUSUM alarms, per topic.

    Only complete hours before ``now`` count; ``counts`` may hold later rows (they are ignored).
    """
    config = config or SpikeConfig()
    baseline = fit_baseline(counts, now, calendar, tz, config)
    n_hours = len(baseline.hours)
    testable = baseline.born <= n_hours - config.min_age_hours
    if not testable.any():
        return []
    limits = thresholds(sensitivity, int(testable.sum()), config)
    observed = baseline.observed[:, testable]
    expected = baseline.expected[:, testable]
    topics = baseline.topics[testable]
    signals = []
    for window in WINDOWS:
        seen = observed[-window:].sum(axis=0)
        usual = expected[-window:].sum(axis=0)
        phi = baseline.dispersion[window][testable]
        factor = _surge(seen[None, :], usual[None, :], phi, config)[0]
        usual = usual * factor
        p_values, ratio, fire = _window_test(
            seen,
            usual,
            phi,
            config.min_count[window],
            config.min_ratio[window],
            limits.alpha[window],
            config.min_excess[window],
        )
        signals += [
            SpikeSignal(
                int(topics[i]),
                window,
                float(seen[i]),
                float(usual[i]),
                float(p_values[i]),
                float(ratio[i]),
                "burst",
                bool(factor[i] > 1),
                bool(p_values[i] < limits.immediate[window]),
            )
            for i in np.flatnonzero(fire)
        ]
    signals += _cusum_signals(baseline, testable, limits, config)
    return signals


def _window_test(
    observed: np.ndarray,
    expected: np.ndarray,
    dispersion: np.ndarray,
    min_count: float,
    min_ratio: float,
    alpha: float,
    min_excess: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """p-values, ratios and whether each window fires."""
    p_values = upper_tail(observed, expected, dispersion)
    ratio = observed / np.maximum(expected, MIN_EXPECTED)
    large = (observed >= min_count) & (observed - expected >= min_excess)
    fire = (p_values < alpha) & large & (ratio >= min_ratio)
    return p_values, ratio, fire


def _cusum_signals(
    baseline: Baseline, testable: np.ndarray, limits: Thresholds, config: SpikeConfig
) -> list[SpikeSignal]:
    """CUSUM alarms at the last complete hour, run over the guard period."""
    guard = slice(len(baseline.hours) - config.guard_hours, None)
    observed = baseline.observed[guard][:, testable]
    expected = baseline.expected[guard][:, testable]
    phi = baseline.dispersion[1][testable]
    factors = _surge(observed, expected, phi, config)
    expected = expected * factors
    # A topic's CUSUM starts once it is old enough to be tested.
    first = baseline.born[testable] + config.min_age_hours - guard.start
    counting = np.arange(config.guard_hours)[:, None] >= first[None, :]
    # Quasi-Poisson: a rise must stand out of day-to-day variation, so the log-likelihood
    # ratios are divided by the variance / mean of a topic's daily counts.
    daily = baseline.expected[:, testable].mean(axis=0) * 24
    scale = 1 + baseline.dispersion[24][testable] * daily
    alarms, began = cusum(
        observed * counting, expected * counting, config.cusum_shift, limits.cusum_h, scale
    )
    signals = []
    for i in np.flatnonzero(alarms[-1]):
        run = slice(began[i], None)
        seen, usual = observed[run, i].sum(), expected[run, i].sum()
        length = config.guard_hours - began[i]
        phi = baseline.dispersion_for(length)[testable][i]
        p_value = upper_tail(np.array([seen]), np.array([usual]), np.array([phi]))[0]
        signals.append(
            SpikeSignal(
                int(baseline.topics[testable][i]),
                int(length),
                float(seen),
                float(usual),
                float(p_value),
                float(seen / max(usual, MIN_EXPECTED)),
                "cusum",
                bool((factors[run, i] > 1).any()),
                True,
            )
        )
    return signals


def _surge(
    observed: np.ndarray, expected: np.ndarray, dispersion: np.ndarray, config: SpikeConfig
) -> np.ndarray:
    """Per row of (rows, topics) counts and per topic, the district factor of the OTHER topics
    where they are surging: at least ``surge_min`` and their total significantly above
    expectation; else 1 (a quiet district never lowers expectations). Leaving the topic out
    keeps one topic's own burst from passing for a district-wide surge when there are few."""
    n_topics = observed.shape[1]
    factors = np.ones(observed.shape)
    for topic in range(n_topics):
        others = np.arange(n_topics) != topic
        if not others.any():
            continue
        seen, usual = observed[:, others], expected[:, others]
        factor = district_factor(seen, usual)
        total = usual.sum(axis=1)
        # The total's dispersion if topics vary independently: sum of variances over mean².
        phi = (dispersion[others] * usual**2).sum(axis=1) / np.maximum(total, MIN_EXPECTED) ** 2
        surging = upper_tail(seen.sum(axis=1), total, phi) < config.surge_alpha
        factors[:, topic] = np.where(surging & (factor >= config.surge_min), factor, 1.0)
    return factors


def _wide(
    counts: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts as an (hours, topics) array over [start, end), the topic ids, and each topic's
    first hour with a message (an index; -1 when before ``start``)."""
    buckets = pd.to_datetime(counts["bucket_start"], utc=True).dt.tz_convert(None).to_numpy()
    n = counts["n"].to_numpy()
    past = (buckets < end.tz_localize(None).to_datetime64()) & (n > 0)
    offsets = (buckets[past] - start.tz_localize(None).to_datetime64()) // np.timedelta64(1, "h")
    column, topics = pd.factorize(counts["topic_id"].to_numpy()[past], sort=True)
    n_hours = int((end - start) // pd.Timedelta(hours=1))
    inside = offsets >= 0
    flat = offsets[inside] * len(topics) + column[inside]
    observed = np.bincount(flat, weights=n[past][inside], minlength=n_hours * len(topics))
    observed = observed.reshape(n_hours, len(topics))
    earlier = np.bincount(column[~inside], minlength=len(topics)) > 0
    first = np.where(observed.any(axis=0), (observed > 0).argmax(axis=0), n_hours)
    return observed, np.asarray(topics), np.where(earlier, -1, first)


def _cells(
    hours: pd.DatetimeIndex, calendar: SchoolCalendar, tz: ZoneInfo | str
) -> tuple[np.ndarray, np.ndarray]:
    """Each hour's cell (day type × local hour) and whether its day is ordinary."""
    local = hours.tz_convert(tz)
    day_index, days = pd.factorize(local.tz_localize(None).normalize())
    dates = [day.date() for day in days]
    kinds = np.array([DAY_TYPES.index(calendar.day_type(day)) for day in dates])
    ordinary = np.array([calendar.is_ordinary(day) for day in dates])
    return kinds[day_index] * 24 + local.hour.to_numpy(), ordinary[day_index]


def _cell_means(
    observed: np.ndarray,
    cells: np.ndarray,
    mask: np.ndarray,
    prior: np.ndarray | None,
    config: SpikeConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted means per cell, (N_CELLS, K), with past spikes down-weighted (improved
    Farrington: weight (c / r)² for an Anscombe residual r above c, scaled for
    overdispersion); returns them and the final weights. ``prior`` (N_CELLS, K) adds
    ``prior_weight`` pseudo-observations per cell."""
    order = np.argsort(cells, kind="stable")
    ordered = cells[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])

    def per_cell(values: np.ndarray) -> np.ndarray:
        sums = np.zeros((N_CELLS, values.shape[1]))
        sums[ordered[starts]] = np.add.reduceat(values[order], starts, axis=0)
        return sums

    def means(weights: np.ndarray) -> np.ndarray:
        mass, sums = per_cell(weights), per_cell(weights * observed)
        if prior is None:
            return np.where(mass > 0, sums / np.maximum(mass, 1e-12), np.nan)
        return (sums + config.prior_weight * prior) / (mass + config.prior_weight)

    mask = mask.astype(float)
    weights = mask
    c = config.downweight_above
    # Twice: the first dispersion estimate is itself inflated by the spikes it is to discount.
    for _ in range(2):
        fitted = np.nan_to_num(means(weights))[cells]
        phi = _dispersion(observed, fitted, weights, 1)
        fitted = np.maximum(fitted, MIN_EXPECTED)
        residual = 1.5 * (observed ** (2 / 3) - fitted ** (2 / 3)) / fitted ** (1 / 6)
        residual = residual / np.sqrt(1 + phi * fitted)
        weights = mask * np.where(residual > c, (c / np.maximum(residual, c)) ** 2, 1.0)
    return means(weights), weights


def _borrow(means: np.ndarray) -> None:
    """Fill cells of day types with no history from the same hour of another day type."""
    by_type = means.reshape(len(DAY_TYPES), 24, -1)
    for kind, fallbacks in BORROW.items():
        row = by_type[DAY_TYPES.index(kind)]
        for fallback in fallbacks:
            row[:] = np.where(np.isnan(row), by_type[DAY_TYPES.index(fallback)], row)
    np.nan_to_num(means, copy=False, nan=MIN_EXPECTED)


def _dispersion(
    observed: np.ndarray, expected: np.ndarray, weights: np.ndarray, window: int
) -> np.ndarray:
    """Method-of-moments negative-binomial dispersion per column of ``window``-hour sums:
    Var = mean + dispersion × mean². Columns with little data lean on the pooled estimate."""
    if window > 1:
        observed, expected = _rolling_sum(observed, window), _rolling_sum(expected, window)
        # A window weighs as its least trusted hour (a past spike discounts it).
        kernel = np.lib.stride_tricks.sliding_window_view
        weights = kernel(weights, window, axis=0).min(axis=-1)
    if observed.shape[1] == 0:
        return np.zeros(0)
    numerator = (weights * ((observed - expected) ** 2 - expected)).sum(axis=0)
    denominator = (weights * expected**2).sum(axis=0)
    pooled = max(numerator.sum(), 0.0) / max(denominator.sum(), 1e-12)
    anchor = max(float(np.median(denominator)), 1e-12)
    phi = (numerator + anchor * pooled) / (denominator + anchor)
    return np.clip(phi, 0.0, MAX_DISPERSION)


def _rolling_sum(values: np.ndarray, window: int) -> np.ndarray:
    """Sums of ``window`` consecutive rows."""
    total = np.cumsum(values, axis=0)
    return np.concatenate([total[window - 1 : window], total[window:] - total[:-window]])
