"""seqtool: train, evaluate and run recurrent networks (RNN, LSTM, GRU) on sequences."""

__version__ = "0.1.0"
