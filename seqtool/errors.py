"""The one exception type whose message is meant for the user.

Anything raised as `SeqtoolError` is a problem with the user's input (config, data, checkpoint,
command line). The CLI prints its message as a single `Error: ...` line and exits with code 2.
Every other exception is a bug in seqtool and keeps its traceback.
"""


class SeqtoolError(Exception):
    """A problem the user can fix; the message says what and where."""


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (its type's name when it has none): what a
    one-line error says of a library's failure."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class TrainingInterrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after saving a resumable checkpoint.

    `exit_code` follows the shell convention 128 + signal: 130 for Ctrl-C, 143 for SIGTERM.
    """

    def __init__(self, signum: int, checkpoint: object):
        self.exit_code = 128 + signum
        self.checkpoint = checkpoint
        self.resume_command = "seqtool train CONFIG --resume"
        self.quiet = False  # True in processes other than rank 0 under torchrun: one message is enough
        super().__init__(f"resumable checkpoint saved to {checkpoint}")
