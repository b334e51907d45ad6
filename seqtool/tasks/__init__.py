"""Task kinds: the protocol a kind implements, the registry that finds kinds, and the parsing
of their command-line options. Plug-ins import what they need from here (`from seqtool.tasks
import Task, Example, ...`); the parts live in `protocol.py`, `registry.py` and `options.py`.
The rest of seqtool reaches a kind only through the registry: no other module names one.
"""

from seqtool.tasks.options import parse_options
from seqtool.tasks.protocol import (
    BadInput,
    Example,
    MainMetric,
    Phase,
    PredictOption,
    ServeSpec,
    Starter,
    Task,
    Unsuitable,
    WindowedTask,
    evaluating,
    to_device,
)
from seqtool.tasks.registry import (
    DEFAULT_KIND,
    ENTRY_POINT_GROUP,
    KindEntry,
    describe_kinds,
    entries,
    kind_record,
    make_task,
    names,
    recorded_main_metric,
    task_class,
)

__all__ = [
    "DEFAULT_KIND",
    "ENTRY_POINT_GROUP",
    "BadInput",
    "Example",
    "KindEntry",
    "MainMetric",
    "Phase",
    "PredictOption",
    "ServeSpec",
    "Starter",
    "Task",
    "Unsuitable",
    "WindowedTask",
    "describe_kinds",
    "entries",
    "evaluating",
    "kind_record",
    "make_task",
    "names",
    "parse_options",
    "recorded_main_metric",
    "task_class",
    "to_device",
]
