"""Recurrent cells: torch's fused RNN, LSTM and GRU, and the cells of this decade, behind one registry.

`seqtool.cells.protocol` is the contract (its docstrings are the reference in docs/cells.md);
`seqtool.cells.registry` finds cells through the entry-point group `seqtool.cells`.
"""

from seqtool.cells.protocol import Cell, StatePart
from seqtool.cells.registry import cell, describe_cells, names

__all__ = ["Cell", "StatePart", "cell", "describe_cells", "names"]
