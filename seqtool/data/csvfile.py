"""Reading CSV files with errors that say what and where (file, byte offset, row, column)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from seqtool.errors import SeqtoolError, reading_user_file


def read_csv(path: str | Path, strings: bool = False) -> pd.DataFrame:
    """Read a CSV (or, by its suffix, a TSV) with pandas; errors name the file (and byte offset).
    With `strings` every cell stays the text it is: "NA", "null" and "nan" are words, not missing."""
    path = Path(path)
    options: dict = {"dtype": str, "keep_default_na": False} if strings else {}
    if path.suffix.lower() == ".tsv":
        options["sep"] = "\t"  # quoted where needed, as a CSV is
    try:
        with reading_user_file(path, expected="a CSV file"):
            try:
                frame = pd.read_csv(path, skipinitialspace=True, encoding="utf-8-sig", **options)  # streamed: no copy
            except UnicodeDecodeError:  # pandas decodes in chunks: find the offset in the whole file
                path.read_bytes().decode("utf-8-sig")
                raise
    except pd.errors.EmptyDataError:
        raise SeqtoolError(f"{path}: the file is empty") from None
    except pd.errors.ParserError as exc:
        raise SeqtoolError(f"{path}: not a valid CSV ({str(exc).strip().splitlines()[-1]})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise SeqtoolError(f"{path}: the CSV has a header but no rows")
    return frame


def check_columns(frame: pd.DataFrame, wanted: dict[str, list[str]], source: str) -> None:
    """Every configured column must exist; the error lists the columns that do."""
    for key, columns in wanted.items():
        for column in columns:
            if column not in frame.columns:
                raise SeqtoolError(
                    f"{source}: column '{column}' (data.{key}) not found; the file has columns: {', '.join(frame.columns)}"
                )


def csv_row(index: int) -> int:
    """The line number of a data row in the CSV file (header is line 1)."""
    return int(index) + 2
