"""What a new user reads: every command the README prints works as printed after its set-up, and
the documents speak only of what the project ships."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def shell_lines(markdown: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", markdown, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_bare_seqtool_commands_come_only_after_the_venv_is_activated():
    lines = shell_lines(README)
    activated = lines.index("source .venv/bin/activate")
    bare = [i for i, line in enumerate(lines) if re.match(r"(seqtool|torchrun) ", line)]
    assert bare and min(bare) > activated, [lines[i] for i in bare if i < activated]
    set_up = [line for line in lines[:activated] if line.startswith("python3 -m venv")]
    assert len(set_up) == 2 and all(".venv/bin/seqtool" in line or "pytest" in line for line in set_up)


def test_the_quick_start_budgets_in_steps_so_a_slower_machine_trains_the_same_model():
    quick_start = next(line for line in shell_lines(README) if "seqtool train" in line)
    assert re.search(r"training\.max_steps=\d+", quick_start) and "training.max_time=null" in quick_start
    assert '--prompt "ROMEO:"' in quick_start


def test_the_overview_the_readme_quotes_ships_with_the_project():
    assert "(docs/rnn-lstm-overview.md)" in README
    overview = (REPO / "docs" / "rnn-lstm-overview.md").read_text(encoding="utf-8")
    assert "RNN vs LSTM Comparison" in overview and "Machine Translation" in overview


@pytest.mark.parametrize(
    "path", ["README.md", "data/README.md", "docs/long_range.md", "docs/benchmarks.md", "docs/config.md", "docs/tasks.md"]
)
def test_documents_speak_only_of_what_a_user_has(path):
    text = (REPO / path).read_text(encoding="utf-8")
    for phrase in ("seed document", "SOURCES.md", "shared/", "the seed's"):
        assert phrase not in text, (path, phrase)
