"""Training, validation and test parts of a table of independent samples (pairs, clips, texts
that carry no order): separate files, or one file split at random with the config's seed."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from seqtool.data import csvfile
from seqtool.schema import FileSplitData


def file_parts(
    data: FileSplitData, read: Callable[[str], pd.DataFrame], seed: int, group_column: str | None = None
) -> dict[str, tuple[str, pd.DataFrame]]:
    """split -> (the file its rows come from, the rows, in file order). With `data.train` the
    parts are the files given; else `data.path` is split at random with `seed`: by rows, or by
    whole groups when `group_column` names a column (a voice, a speaker), so that no group is on
    two sides. Validation gets at least one unit; an empty test part is left out."""
    if data.train:
        files = {"train": data.train, "val": data.val, "test": data.test}
        return {split: (path, read(path)) for split, path in files.items() if path}
    frame = read(data.path)
    if group_column:
        csvfile.check_columns(frame, {"group_column": [group_column]}, data.path)
    units = frame[group_column].to_numpy() if group_column else np.arange(len(frame))
    codes, distinct = pd.factorize(units)  # codes: each row's unit, numbered in order of appearance
    rank = np.empty(len(distinct), dtype=np.int64)
    rank[np.random.default_rng(seed).permutation(len(distinct))] = np.arange(len(distinct))  # unit -> its draw
    n_val = max(1, round(len(distinct) * data.val_fraction))
    n_test = round(len(distinct) * data.test_fraction)
    part = np.where(rank < n_val, "val", np.where(rank < n_val + n_test, "test", "train"))[codes]
    return {split: (data.path, frame[part == split]) for split in ("train", "val", "test") if (part == split).any()}
