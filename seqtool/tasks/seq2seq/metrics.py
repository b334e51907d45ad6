"""How outputs are scored: exact match and token error rate by edit distance, BLEU and chrF by sacrebleu."""

from __future__ import annotations

import numpy as np

from seqtool.errors import SeqtoolError
from seqtool.tasks.seq2seq.tokens import join_tokens


def edit_distance(a: list[str], b: list[str]) -> int:
    """Levenshtein distance between two token lists (substitutions, insertions, deletions)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def sequence_metrics(hypotheses: list[list[str]], references: list[list[str]], tokenizer: str) -> dict[str, float]:
    """BLEU and chrF (sacrebleu, on the joined strings), exact match, and token error rate.

    BLEU uses sacrebleu's effective order: it equals standard corpus BLEU whenever every n-gram
    order up to 4 has a match (always, on real translation test sets), and stays meaningful when
    outputs are shorter than 4 tokens (one-word answers), where standard BLEU is 0 by definition."""
    try:
        import sacrebleu
        from sacrebleu.metrics import BLEU
    except ImportError:
        raise SeqtoolError("seq2seq evaluation needs sacrebleu, not installed: pip install 'seqtool[seq2seq]'") from None
    joined = [join_tokens(h, tokenizer) for h in hypotheses]
    truth = [join_tokens(r, tokenizer) for r in references]
    errors = sum(edit_distance(h, r) for h, r in zip(hypotheses, references, strict=True))
    return {
        "bleu": BLEU(tokenize="none" if tokenizer == "whitespace" else "13a", effective_order=True)
        .corpus_score(joined, [truth])
        .score,
        "chrf": sacrebleu.corpus_chrf(joined, [truth]).score,
        "exact_match": float(np.mean([h == r for h, r in zip(hypotheses, references, strict=True)])),
        "token_error_rate": errors / max(1, sum(len(r) for r in references)),
    }
