"""Write docs/config.md from the config schema: python scripts/config_reference.py"""

from pathlib import Path

from seqtool.config import reference_markdown

if __name__ == "__main__":
    target = Path(__file__).resolve().parent.parent / "docs" / "config.md"
    target.write_text(reference_markdown(), encoding="utf-8")
    print(f"wrote {target}")
