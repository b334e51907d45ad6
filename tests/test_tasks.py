"""The task-kind registry: kinds come from entry points, and only seqtool/tasks/ knows any of them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_clean_error

import seqtool
from seqtool.tasks import ENTRY_POINT_GROUP, Task, entries, names, task_class

PACKAGE = Path(seqtool.__file__).parent
# seqtool's own kinds, as its pyproject.toml declares them (the registry must find each).
_DECLARED = (PACKAGE.parent / "pyproject.toml").read_text().split('[project.entry-points."seqtool.tasks"]')[1].split("\n[")[0]
BUILT_IN = re.findall(r"^(\w+) = ", _DECLARED, flags=re.M)


def test_the_built_in_kinds_are_declared_as_entry_points_of_seqtool_itself():
    declared = entries()
    assert len(BUILT_IN) >= 6 and set(BUILT_IN) <= set(declared)
    for name in BUILT_IN:
        assert declared[name].origin == f"seqtool {seqtool.__version__}"
        cls = task_class(name)
        assert issubclass(cls, Task) and cls.name == name
        assert cls.description and cls.reads and cls.data_schema is not None
    pyproject = (PACKAGE.parent / "pyproject.toml").read_text()
    assert f'[project.entry-points."{ENTRY_POINT_GROUP}"]' in pyproject


def test_no_module_outside_seqtool_tasks_names_a_kind():
    """cli, api, export, runs, init, compare, plots, config and engine reach kinds through the
    registry only: a new kind is one place under seqtool/tasks/ and one entry point."""
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names())) + r")\b")
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if (PACKAGE / "tasks") in path.parents:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_tasks_command_lists_every_kind_with_its_origin(run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    listing = run_cli("tasks")
    assert listing.code == 0, listing
    for name in BUILT_IN:
        line = next(line for line in listing.out.splitlines() if line.strip().startswith(f"{name} "))
        assert task_class(name).description[:40] in line and f"seqtool {seqtool.__version__}" in line
    rows = json.loads(run_cli("tasks", "--json").out)
    assert [row["name"] for row in rows] == names()
    assert {row["name"]: row["main_metric"] for row in rows}["forecast"] == "mase"
    starts = {row["name"]: list(row["init_from"]) for row in rows}  # which runs `--init-from` takes
    assert starts["classify"] == ["classify", "language_model"] and starts["forecast"] == ["forecast"]


def test_an_unknown_kind_is_named_with_the_installed_ones(write_config, run_cli):
    result = run_cli("train", write_config(), "task=forecasting")
    assert_clean_error(result, "'task' must be one of", "forecast", "did you mean 'forecast'")


def test_predict_options_of_a_kind_are_parsed_and_checked():
    from seqtool.errors import SeqtoolError
    from seqtool.tasks import parse_options

    kind = task_class("language_model")
    options = parse_options(kind, ["--length", "7", "--top-k=3", "--prompt", "to be"], "run")
    assert options == {"prompt": "to be", "length": 7, "temperature": None, "top_k": 3, "seed": None, "num_samples": None}
    for args, message in (
        (["--length", "0"], "--length must be at least 1"),
        (["--length", "many"], "--length must be an integer"),
        (["--length"], "--length needs a value"),
        (["--horizon", "3"], "--horizon applies to forecast models"),
        (["--colour", "red"], "no such predict option --colour"),
        (["stray"], "unexpected argument 'stray'"),
    ):
        with pytest.raises(SeqtoolError, match=re.escape(message)):
            parse_options(kind, args, "run")


def test_help_of_the_whole_tool_reads_no_kind():
    """`seqtool --help` and `runs` read the registry without importing any kind (or torch)."""
    code = (
        "import sys\nfrom seqtool.tasks import entries\nentries()\n"
        "kinds = {e.target.split(':')[0] for e in entries().values()}\n"
        "assert not [m for m in sys.modules if m in kinds or m.rsplit('.', 1)[0] in kinds], sorted(sys.modules)\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_protocol_reference_in_docs_is_generated_from_the_task_class():
    """docs/tasks.md's reference is what `scripts/tasks_reference.py` writes from the protocol's
    docstrings, and it names every public attribute and method of `Task` and `WindowedTask`."""
    from conftest import load_script

    from seqtool.tasks import WindowedTask

    page = (PACKAGE.parent / "docs" / "tasks.md").read_text(encoding="utf-8")
    assert load_script("tasks_reference").updated_page(page) == page, (
        "docs/tasks.md is stale: run python scripts/tasks_reference.py"
    )
    reference = page[page.index("## Protocol reference") :]
    for cls in (Task, WindowedTask):
        members = [name for name in vars(cls) if not name.startswith("_")] + list(cls.__annotations__)
        missing = [name for name in members if f"`{name}" not in reference]
        assert not missing, f"{cls.__name__}: {missing} not in the reference"


@pytest.mark.slow
def test_a_new_kind_is_conformance_and_serve_tested_without_editing_a_test(tmp_path):
    """The second plug-in (tests/fixtures/plugin_palindrome, written from docs/tasks.md alone),
    installed beside seqtool as a user would, and the conformance tests run as they stand: the
    registry puts the new kind in their lists, and it passes every check, serve included."""
    from seqtool.testing import CHECKS

    target = tmp_path / "site-packages"
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target)]
    subprocess.run([*install, str(PACKAGE.parent / "tests" / "fixtures" / "plugin_palindrome")], check=True, capture_output=True)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))}
    selection = ["tests/test_conformance.py", "-k", "palindrome", "-m", "not slow", "-rA", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *selection],
        cwd=PACKAGE.parent,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    passed = set(re.findall(r"PASSED tests/test_conformance.py::test_installed_kind\[palindrome-(\w+)\]", result.stdout))
    assert passed == {check.name for check in CHECKS if not check.slow}, result.stdout[-3000:]


def test_plug_ins_written_for_earlier_releases_still_import_their_names():
    """Plug-ins imported schemas and helpers from `seqtool.config` before it was split into
    `seqtool.schema` and `seqtool.configure`; those names are still there, the same objects."""
    import seqtool.config as old
    from seqtool import configure, schema

    for name in ("option", "ModelConfig", "TokenModelConfig", "TrainingConfig", "Config", "Where", "check_split_fractions"):
        assert getattr(old, name) is getattr(schema, name), name
    for name in ("load_config", "build_config", "config_from_dict"):
        assert getattr(old, name) is getattr(configure, name), name
