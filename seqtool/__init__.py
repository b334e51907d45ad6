"""seqtool: train, evaluate and run recurrent networks (RNN, LSTM, GRU) on sequences.

`from seqtool import train, load` gives the Python API (seqtool/api.py); importing the package
itself stays light (no torch) so that `seqtool --help` is fast.
"""

__version__ = "0.1.0"
__all__ = ["load", "train"]


def __getattr__(name: str):
    if name in __all__:
        from seqtool import api

        return getattr(api, name)
    raise AttributeError(f"module 'seqtool' has no attribute {name!r}")
