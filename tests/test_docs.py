"""What a new user reads: the README is a front page, the docs pages build into a site, every
command they print parses as printed after the set-up, and they speak only of what the project
ships."""

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
PAGES = sorted((REPO / "docs").glob("*.md"))
ACTIVATE = "source .venv/bin/activate"


def shell_lines(markdown: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", markdown, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_the_readme_is_a_front_page_that_links_every_job_page():
    assert len(README.splitlines()) <= 250
    for page in ("language-models", "forecasting", "classification", "seq2seq", "speech", "compare", "tune", "serve", "export"):
        assert f"(docs/{page}.md)" in README, page


@pytest.mark.parametrize("document", ["README.md", "docs/index.md"])
def test_bare_seqtool_commands_come_only_after_the_venv_is_activated(document):
    lines = shell_lines((REPO / document).read_text(encoding="utf-8"))
    activated = lines.index(ACTIVATE)
    bare = [i for i, line in enumerate(lines) if re.match(r"(seqtool|torchrun) ", line)]
    assert bare and min(bare) > activated, [lines[i] for i in bare if i < activated]
    set_up = [line for line in lines[:activated] if line.startswith("python3 -m venv")]
    assert len(set_up) == 2 and all(".venv/bin/seqtool" in line or "pytest" in line for line in set_up)


@pytest.mark.parametrize("page", [p.name for p in PAGES if "```bash" in p.read_text(encoding="utf-8") and p.name != "index.md"])
def test_a_page_with_commands_says_they_need_the_activated_venv_before_its_first(page):
    text = (REPO / "docs" / page).read_text(encoding="utf-8")
    assert ACTIVATE in text and text.index(ACTIVATE) < text.index("```bash\n") + len("```bash\n" + ACTIVATE), page


def test_the_set_up_commands_are_the_same_on_the_front_page_and_the_site():
    index = shell_lines((REPO / "docs" / "index.md").read_text(encoding="utf-8"))
    assert [line for line in shell_lines(README) if line.startswith("python3 -m venv")] == [
        line for line in index if line.startswith("python3 -m venv")
    ]


def test_the_quick_start_budgets_in_steps_so_a_slower_machine_trains_the_same_model():
    quick_start = next(line for line in shell_lines(README) if "seqtool train" in line)
    assert re.search(r"training\.max_steps=\d+", quick_start) and "training.max_time=null" in quick_start
    assert '--prompt "ROMEO:"' in quick_start


def test_the_overview_the_readme_quotes_ships_with_the_project():
    assert "(docs/rnn-lstm-overview.md)" in README
    overview = (REPO / "docs" / "rnn-lstm-overview.md").read_text(encoding="utf-8")
    assert "RNN vs LSTM Comparison" in overview and "Machine Translation" in overview


@pytest.mark.parametrize("path", ["README.md", "data/README.md", *[f"docs/{p.name}" for p in PAGES]])
def test_documents_speak_only_of_what_a_user_has(path):
    text = (REPO / path).read_text(encoding="utf-8")
    for phrase in ("seed document", "SOURCES.md", "shared/", "the seed's"):
        assert phrase not in text, (path, phrase)


def _seqtool_commands(markdown: str) -> list[list[str]]:
    """Every `seqtool ...` command of the bash blocks (also after a pipe or `&&`), as arguments."""
    commands = []
    for line in shell_lines(markdown):
        for part in re.split(r"\s*(?:\||&&)\s*", re.sub(r"\s+#\s.*$", "", line).rstrip("\\ ")):
            words = shlex.split(part)
            if words[:1] in (["seqtool"], [".venv/bin/seqtool"]):
                commands.append(words[1:])
    return commands


DOCUMENTS = {"README.md": README, **{f"docs/{p.name}": p.read_text(encoding="utf-8") for p in PAGES}}


@pytest.mark.parametrize("document", list(DOCUMENTS))
def test_every_command_a_document_prints_parses_as_printed(document):
    """Each command names a real command with options it has (a kind's options, for predict and
    evaluate), and each config it trains from ships with the project."""
    from typer.main import get_command

    from seqtool.cli import app
    from seqtool.tasks import names, task_class

    group = get_command(app)
    kind_flags = {o.flag for n in names() for o in (*task_class(n).predict_options, *task_class(n).evaluate_options)}
    for args in _seqtool_commands(DOCUMENTS[document]):
        if not args or args[0].startswith("-"):
            continue
        command = group.commands.get(args[0])
        assert command is not None, f"{document}: no command {args[0]!r} in {args}"
        if "--help" in args:
            continue
        context = command.make_context(args[0], args[1:])
        extra = [a.split("=")[0] for a in context.args if a.startswith("--")]
        assert set(extra) <= kind_flags, f"{document}: {args}: unknown options {set(extra) - kind_flags}"
        config = context.params.get("config")
        if args[0] in ("train", "compare", "tune") and str(config).startswith(("configs/", "examples/")):
            assert (REPO / str(config)).is_file(), f"{document}: {config} does not ship"


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs is not installed (pip install -e '.[docs]')")
def test_the_site_builds_strictly(tmp_path):
    """Every page is in the navigation, and every link and anchor resolves (mkdocs.yml's validation)."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "forecasting" / "index.html").is_file()
