"""What the CLI's commands share: typer's help adjusted to read as people expect, the argument
definitions several commands take, and the help of the options that depend on a checkpoint's
kind. Nothing here imports torch, so `seqtool --help` stays fast."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from seqtool.errors import SeqtoolError


def shown_default(text: str) -> str:
    """ " [default: text]" for an option whose real default is None (so that predict can tell an
    option given from one left out), escaped so that rich does not read it as markup."""
    return f" \\[default: {text}]"


def config_argument(help: str) -> Any:
    return Annotated[Path, typer.Argument(help=help, show_default=False)]


def overrides_argument(help: str) -> Any:
    return Annotated[list[str] | None, typer.Argument(help=help, show_default=False)]


def json_flag(what: str) -> Any:
    return Annotated[bool, typer.Option("--json", help=f"Print {what} on stdout.")]


def force_flag(what: str) -> Any:
    return Annotated[bool, typer.Option("--force", help=f"Replace {what}.")]


Checkpoint = Annotated[Path, typer.Argument(help="Run directory (its best checkpoint) or checkpoint file.", show_default=False)]


class _FlagsTakeNoValue:
    """No `<bool>` metavar beside a flag in the help (typer 0.2x writes one): it takes no value."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if param.param_type_name == "option" and getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class Command(_FlagsTakeNoValue, TyperCommand):
    """Usage lines in the familiar style, `CONFIG [OVERRIDES]...` (typer 0.2x writes `{config}`)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = (param.metavar or param.name or "").upper()
                pieces.append((name if param.required else f"[{name}]") + ("..." if param.nargs != 1 else ""))
        return pieces


class Group(_FlagsTakeNoValue, TyperGroup):
    pass


class KindOptionsCommand(Command):
    """A command whose options after the checkpoint depend on the kind of model (`predict`,
    `evaluate`): its help lists each installed kind's, so it imports the kinds (and torch)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        from seqtool.tasks import names, task_class

        paragraphs = []
        for name in names():
            try:
                kind = task_class(name)
            except SeqtoolError as exc:
                paragraphs.append(f"[bold]{name}[/]: {exc}")
                continue
            paragraph = _kind_paragraph(self.name, name, kind)
            if paragraph:
                paragraphs.append(paragraph)
        heading = "Options by kind of model" if self.name == "predict" else "Options of some kinds of model"
        self.epilog = f"{heading} (after the checkpoint):\n\n" + "\n\n".join(paragraphs) if paragraphs else None
        super().format_help(ctx, formatter)


def _kind_paragraph(command: str, name: str, kind: Any) -> str | None:
    """A kind's options of `command` for the help; None for an evaluate without any (most kinds)."""
    if command == "predict" and kind.not_predictable:
        return f"[bold]{name}[/] models: predict does not apply ({kind.not_predictable})"
    declared = kind.predict_options if command == "predict" else kind.evaluate_options
    if command == "evaluate" and not declared:
        return None
    lines = [f"[bold]{name}[/] models:"]
    for option in declared:
        metavar = {int: "INTEGER", float: "FLOAT", Path: "PATH"}.get(option.type, "TEXT")
        lines.append(f"  {option.flag + ' ' + metavar:<24} {option.help} \\[default: {option.default}]")
    return "\n".join(lines) if declared else f"[bold]{name}[/] models: no options"
