"""English -> another language: software-message pairs from this machine's gettext catalogs, the
same kind of text as data/messages-en-de.tsv (see ../shared/data/SOURCES.md), to check that the
translation recipe holds on a language pair it was not tuned on.

Every compiled catalog (`/usr/share/locale/LANG/LC_MESSAGES/*.mo`) is read with the standard
library. A pair is kept when both sides hold 2-20 words, no format directive (`%s`, `{0}`), no
markup or entity, no file path, no identifier (`_`) and no line break; plural forms are skipped, a message context is
dropped, and an English source keeps its first translation. The pairs are shuffled with seed 0.

    .venv/bin/python benchmarks/messages_pairs.py es /tmp/messages-en-es.tsv
    .venv/bin/seqtool train configs/messages_en_de.yaml data.path=/tmp/messages-en-es.tsv --run-dir runs/en_es
    .venv/bin/seqtool evaluate runs/en_es
"""

from __future__ import annotations

import argparse
import csv
import gettext
import random
import re
from pathlib import Path

UNWANTED = re.compile(r"%|\{|\}|<|>|&\w+;|/|\\|\n|\t|_")


def wanted(text: str) -> bool:
    return 2 <= len(text.split()) <= 20 and not UNWANTED.search(text)


def catalog_pairs(path: Path) -> list[tuple[str, str]]:
    """The kept (English, translation) pairs of one compiled catalog."""
    try:
        with open(path, "rb") as handle:
            catalog = gettext.GNUTranslations(handle)._catalog
    except (OSError, ValueError, LookupError):  # a catalog this reader cannot parse (bad magic, encoding)
        return []
    pairs = []
    for source, target in catalog.items():
        if not isinstance(source, str) or not source or "\x00" in source:
            continue  # the header, or a plural form
        source = source.split("\x04")[-1].strip()
        target = target.strip()
        if wanted(source) and wanted(target):
            pairs.append((source, target))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("language", help="a locale folder name under /usr/share/locale, e.g. es")
    parser.add_argument("output", type=Path, help="the TSV to write (source, target)")
    parser.add_argument("--locale-dir", type=Path, default=Path("/usr/share/locale"))
    args = parser.parse_args()
    chosen: dict[str, str] = {}
    for path in sorted((args.locale_dir / args.language / "LC_MESSAGES").glob("*.mo")):
        for source, target in catalog_pairs(path):
            chosen.setdefault(source, target)
    rows = sorted(chosen.items())
    random.Random(0).shuffle(rows)
    with open(args.output, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["source", "target"])
        writer.writerows(rows)
    print(f"{len(rows):,} pairs -> {args.output}")


if __name__ == "__main__":
    main()
