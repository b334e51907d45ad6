"""How outputs are scored: BLEU, chrF and TER by sacrebleu on the joined texts, exact match and
token error rate by edit distance over tokens (words, for subword models)."""

from __future__ import annotations

import numpy as np

from seqtool.errors import SeqtoolError
from seqtool.tasks.seq2seq.tokens import Codec


def edit_distance(a: list[str], b: list[str]) -> int:
    """Levenshtein distance between two token lists (substitutions, insertions, deletions)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def sequence_metrics(hypotheses: list[str], references: list[str], codec: Codec) -> dict[str, float]:
    """BLEU, chrF and TER (sacrebleu), exact match, and token error rate, of joined texts.

    BLEU uses sacrebleu's effective order: it equals standard corpus BLEU whenever every n-gram
    order up to 4 has a match (always, on real translation test sets), and stays meaningful when
    outputs are shorter than 4 tokens (one-word answers), where standard BLEU is 0 by definition.
    Phoneme strings (the whitespace tokenizer) are scored as given; other text with sacrebleu's
    standard 13a tokenization."""
    try:
        from sacrebleu.metrics import BLEU, CHRF, TER
    except ImportError:
        raise SeqtoolError("seq2seq evaluation needs sacrebleu, not installed: pip install 'seqtool[seq2seq]'") from None
    units = [(codec.units(h), codec.units(r)) for h, r in zip(hypotheses, references, strict=True)]
    errors = sum(edit_distance(h, r) for h, r in units)
    symbols = codec.tokenizer == "whitespace"
    return {
        "bleu": BLEU(tokenize="none" if symbols else "13a", effective_order=True).corpus_score(hypotheses, [references]).score,
        "chrf": CHRF().corpus_score(hypotheses, [references]).score,
        "ter": TER().corpus_score(hypotheses, [references]).score,
        "exact_match": float(np.mean([h == r for h, r in units])),
        "token_error_rate": errors / max(1, sum(len(r) for _, r in units)),
    }
