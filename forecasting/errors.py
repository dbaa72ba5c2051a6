"""Typed errors of the forecasting library.

Every failure a caller can act on has its own type, and each type says whether the same call may
succeed later (``retryable``): the controller then falls back to its reactive rule for this tick and
tries again on the next one, instead of acting on a made-up number.
"""

from __future__ import annotations

from typing import ClassVar

import pandas as pd

__all__ = [
    "FitFailedError",
    "ForecastError",
    "ForecastOutOfRangeError",
    "GapTooLongError",
    "InsufficientHistoryError",
    "InvalidSeriesError",
    "NotFittedError",
]


class ForecastError(Exception):
    """Base of every error raised on purpose by this library."""

    retryable: ClassVar[bool] = False


class InvalidSeriesError(ForecastError, ValueError):
    """The input cannot be read as a load series (wrong index, non-numeric or infinite values, ...).

    Not retryable: the same input will fail the same way; the caller has a bug or a bad query.
    """


class GapTooLongError(InvalidSeriesError):
    """The series has a run of missing points longer than the model may bridge by interpolation.

    Retryable: once fresh points arrive (or the gap leaves the history window) the call succeeds.
    """

    retryable: ClassVar[bool] = True

    def __init__(self, start: pd.Timestamp, end: pd.Timestamp, missing_steps: int, max_fill_steps: int):
        self.start = start
        self.end = end
        self.missing_steps = missing_steps
        self.max_fill_steps = max_fill_steps
        super().__init__(
            f"{missing_steps} consecutive missing points from {start} to {end} "
            f"(at most {max_fill_steps} are filled)"
        )


class InsufficientHistoryError(ForecastError):
    """Fewer regular points than the model needs. Retryable: history grows with every tick."""

    retryable: ClassVar[bool] = True

    def __init__(self, model: str, needed: int, got: int):
        self.model = model
        self.needed = needed
        self.got = got
        super().__init__(f"{model} needs at least {needed} points of history, got {got}")


class FitFailedError(ForecastError):
    """No candidate model could be estimated on this data.

    Retryable: estimation failures are usually data-dependent (a burst, a flat stretch) and a later
    window often fits; the caller should fall back meanwhile.
    """

    retryable: ClassVar[bool] = True

    def __init__(self, model: str, reasons: tuple[str, ...]):
        self.model = model
        self.reasons = reasons
        detail = "; ".join(reasons) if reasons else "no reason reported"
        super().__init__(f"{model} could not be fitted: {detail}")


class ForecastOutOfRangeError(ForecastError):
    """The forecast leaves the range the series makes plausible: above ``limit``, a generous multiple
    of the largest value the model was fitted on (a log-scale trend that explodes), or not a number.

    Refused rather than clipped, because a clipped explosion is still no forecast. Retryable: the next
    points, or the refit they trigger, usually bring the model back; the caller falls back meanwhile.
    """

    retryable: ClassVar[bool] = True

    def __init__(self, limit: float, detail: str):
        self.limit = limit
        super().__init__(f"the forecast {detail} (the bound is {limit:.3g})")


class NotFittedError(ForecastError, RuntimeError):
    """``update`` or ``forecast`` was called before a successful ``fit``: a programming error."""
