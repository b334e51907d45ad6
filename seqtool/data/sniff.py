"""What kind of columns a CSV holds: the guesses `seqtool init` and the kinds' starters make."""

from __future__ import annotations

import pandas as pd

DATE_PARTS = ("year", "month", "day", "hour")


def is_strings(values: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def numeric_columns(frame: pd.DataFrame) -> list[str]:
    """Columns whose cells are at least 90% numbers."""
    found = []
    for column in frame.columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.notna().mean() >= 0.9 and frame[column].notna().any():
            found.append(column)
    return found


def is_row_number(values: pd.Series) -> bool:
    numbers = pd.to_numeric(values, errors="coerce")
    return bool(numbers.notna().all() and len(numbers) > 2 and (numbers.diff().dropna() == 1).all())


def date_columns(frame: pd.DataFrame) -> list[str]:
    """The column of dates, or the year/month/day(/hour) columns; [] when there are none."""
    lower = {c.lower(): c for c in frame.columns}
    if all(p in lower for p in DATE_PARTS[:3]):
        return [lower[p] for p in DATE_PARTS if p in lower]
    for column in frame.columns:
        if pd.api.types.is_numeric_dtype(frame[column]):
            continue
        parsed = pd.to_datetime(frame[column].head(200).astype(str), errors="coerce", format="mixed")
        if parsed.notna().mean() >= 0.9:
            return [column]
    return []


def text_columns(frame: pd.DataFrame) -> list[str]:
    """Columns of strings averaging over 20 characters: prose rather than labels or codes."""
    return [c for c in frame.columns if is_strings(frame[c]) and frame[c].astype(str).str.len().mean() > 20]
