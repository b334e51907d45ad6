"""`seqtool predict` and `seqtool evaluate` options after the checkpoint, read against the
options the checkpoint's kind declares (`Task.predict_options`, `Task.evaluate_options`)."""

from __future__ import annotations

from typing import Any

from seqtool.errors import SeqtoolError
from seqtool.tasks.protocol import PredictOption, Task
from seqtool.tasks.registry import names, task_class


def parse_options(kind: type[Task], args: list[str], checkpoint: str, command: str = "predict") -> dict[str, Any]:
    """`seqtool predict` (or `evaluate`) arguments after the checkpoint, read against the kind's
    `predict_options` (or `evaluate_options`), as `--flag VALUE` or `--flag=VALUE`: a name
    (`top_k` for `--top-k`) -> value, None when not given. An option of another kind is named as such."""
    declared = _declared(kind, command)
    own = {option.flag: option for option in declared}
    values: dict[str, Any] = {option.name: None for option in declared}
    positional = kind.predict_arguments if command == "predict" else None
    if positional:
        values[positional] = []
    rest = list(args)
    while rest:
        flag, given, text = rest.pop(0).partition("=")
        if positional and not flag.startswith("-"):
            values[positional].append(flag + given + text)
            continue
        if flag not in own:
            raise _foreign_option(kind, flag, checkpoint, command)
        if not given:
            if not rest:
                raise SeqtoolError(f"{flag} needs a value")
            text = rest.pop(0)
        values[own[flag].name] = _option_value(own[flag], text)
    return values


def _declared(kind: type[Task], command: str) -> tuple[PredictOption, ...]:
    return kind.predict_options if command == "predict" else kind.evaluate_options


def _foreign_option(kind: type[Task], flag: str, checkpoint: str, command: str) -> SeqtoolError:
    if not flag.startswith("-"):
        return SeqtoolError(f"unexpected argument {flag!r} after the checkpoint {checkpoint}")
    owners = [name for name in names() if any(option.flag == flag for option in _declared(task_class(name), command))]
    if owners:
        return SeqtoolError(f"{command} {flag} applies to {' and '.join(owners)} models; {checkpoint} is a {kind.name} model")
    listed = ", ".join(option.flag for option in _declared(kind, command)) or "none"
    return SeqtoolError(f"no such {command} option {flag} for a {kind.name} model (its options: {listed})")


def _option_value(option: PredictOption, text: str) -> Any:
    """The option's value as its type, checked against its minimum."""
    try:
        value = option.type(text)
    except ValueError:
        raise SeqtoolError(f"{option.flag} must be {'an integer' if option.type is int else 'a number'}, got {text!r}") from None
    if option.min is not None and value < option.min:
        raise SeqtoolError(f"{option.flag} must be at least {option.min:g}, got {text}")
    return value
