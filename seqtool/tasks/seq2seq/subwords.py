"""Subword vocabularies (`bpe`, `unigram`), learned on the training part with SentencePiece.

SentencePiece (Kudo & Richardson 2018) rather than Hugging Face `tokenizers`: one library gives
both byte-pair encoding (Sennrich et al. 2016) and the unigram language model (Kudo 2018, its own),
it treats text as a raw character stream with spaces marked `▁`, so joining pieces back is exact
and needs no language-specific detokenizer, and a model trains in a fraction of a second from
memory into a self-contained file of a few hundred kilobytes. The model travels with the run as
base64 text (inside the checkpoint's plain data and the export metadata JSON), never as a pickle.

Its ids 0-3 are seqtool's specials (`<pad>`, `<unk>`, `<s>`, `</s>`), so a subword side's
vocabulary is simply the model's pieces in id order.
"""

from __future__ import annotations

import base64
import io
import re

from seqtool.errors import SeqtoolError

SPACE = "\u2581"  # SentencePiece's mark for a space before a piece
TOO_LARGE = re.compile(r"Please set it to a value <= (\d+)")


def learn(texts: list[str], kind: str, vocab_size: int, what: str) -> str:
    """A SentencePiece model of `kind` (bpe or unigram) learned on `texts`, as base64 text.
    `what` names the data and key for an error (a vocabulary the text cannot fill)."""
    import sentencepiece

    buffer = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=buffer,
            model_type=kind,
            vocab_size=vocab_size,
            character_coverage=1.0,  # every character of the training text is a piece: nothing seen is unknown
            num_threads=1,  # the same model on every machine and run
            minloglevel=2,
            pad_id=0,
            unk_id=1,
            bos_id=2,
            eos_id=3,
        )
    except RuntimeError as exc:
        largest = TOO_LARGE.search(str(exc))
        if largest:
            raise SeqtoolError(
                f"{what}: data.vocab_size {vocab_size} is more {kind} pieces than the training text allows; "
                f"the largest that works is {largest.group(1)}"
            ) from None
        raise SeqtoolError(f"{what}: SentencePiece could not learn a {kind} vocabulary: {exc}") from None
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class Subwords:
    """A learned model: text to pieces, and pieces back to text."""

    def __init__(self, model: str, source: str):
        import sentencepiece

        try:
            self.processor = sentencepiece.SentencePieceProcessor(model_proto=base64.b64decode(model))
        except (RuntimeError, ValueError) as exc:
            raise SeqtoolError(f"{source}: the subword model stored with the run is damaged ({exc})") from None

    def pieces(self) -> list[str]:
        """The vocabulary, in id order (ids 0-3: the specials)."""
        return [self.processor.id_to_piece(i) for i in range(self.processor.get_piece_size())]

    def tokens(self, text: str) -> list[str]:
        return list(self.processor.encode(text, out_type=str))

    @staticmethod
    def join(tokens: list[str]) -> str:
        """SentencePiece's decoding, for any piece: also one copied from the source for an
        unknown word, or a literal `<unk>`."""
        return "".join(tokens).replace(SPACE, " ").strip()
