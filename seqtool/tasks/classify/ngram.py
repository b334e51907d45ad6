"""The n-gram baseline beside every classifier: a linear model on word uni- and bigrams.

Two linear models are fitted on the training part with scikit-learn, and the one that scores the
better accuracy on the validation part is kept:

- **NBSVM** (Wang & Manning 2012): binary n-gram features, each scaled by its naive-Bayes
  log-count ratio log((p / |p|) / (q / |q|)) for the class against the rest, then a logistic
  regression per class (one against the rest; the class with the highest score wins);
- **TF-IDF with logistic regression**: sublinear term frequencies times inverse document
  frequencies, rows normalised to unit length, one multinomial logistic regression.

The one kept travels with the run as plain arrays (its n-gram vocabulary, feature weights,
coefficients and intercepts), so `evaluate` applies it without refitting and the checkpoint holds
no pickled object. Texts are read as lower-cased words and punctuation marks, whatever the
network's own tokenizer.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from seqtool.tasks.classify import table

REGULARISATION = (0.3, 1.0, 3.0)  # inverse strengths C tried on the validation part
NB_SMOOTHING = 1.0  # alpha added to the feature counts of the log-count ratios


def ngrams(tokens: list[str]) -> list[str]:
    """A text's word unigrams and bigrams (bigrams joined by a space)."""
    return tokens + [f"{a} {b}" for a, b in pairwise(tokens)]


def word_tokens(texts: pd.Series) -> pd.Series:
    return table.tokenize_column(texts, "word", lowercase=True)


@dataclass
class NgramModel:
    kind: str  # "nbsvm" or "tfidf"
    vocabulary: list[str]
    weights: np.ndarray  # (rows, features): NB ratios per class (nbsvm) or the idf (tfidf, one row)
    coef: np.ndarray  # (classes, features)
    intercept: np.ndarray  # (classes,)
    regularisation: float
    validation_accuracy: float

    @functools.cached_property
    def _vectorizer(self) -> Any:
        """Built once per model: predict and serve label one text at a time."""
        from sklearn.feature_extraction.text import CountVectorizer

        return CountVectorizer(analyzer=ngrams, vocabulary={gram: i for i, gram in enumerate(self.vocabulary)})

    def counts(self, tokens: pd.Series) -> Any:
        """Sparse n-gram counts (texts, features) over the stored vocabulary."""
        return self._vectorizer.transform(tokens)

    def scores(self, tokens: pd.Series) -> np.ndarray:
        """Class scores (texts, classes); the prediction is their argmax."""
        return self.scores_of_counts(self.counts(tokens))

    def scores_of_counts(self, counts: Any) -> np.ndarray:
        """Class scores from n-gram counts over this model's vocabulary."""
        if self.kind == "nbsvm":
            binary = (counts > 0).astype(np.float64)
            return (
                np.stack([binary.multiply(self.weights[c]).tocsr() @ self.coef[c] for c in range(len(self.coef))], axis=1)
                + self.intercept
            )
        return _tfidf(counts, self.weights[0]) @ self.coef.T + self.intercept

    def predict(self, tokens: pd.Series) -> np.ndarray:
        return self.scores(tokens).argmax(axis=1)

    def probabilities(self, tokens: pd.Series) -> np.ndarray:
        """Class probabilities (texts, classes): the softmax of the class scores (exact for TF-IDF's
        multinomial regression; for NBSVM's one-against-the-rest scores, their normalised exponentials)."""
        scores = self.scores(tokens)
        exp = np.exp(scores - scores.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "vocabulary": self.vocabulary,
            "weights": self.weights.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
            "regularisation": self.regularisation,
            "validation_accuracy": self.validation_accuracy,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NgramModel:
        arrays = {key: np.asarray(data[key], dtype=np.float64) for key in ("weights", "coef", "intercept")}
        return cls(data["kind"], list(data["vocabulary"]), **arrays, regularisation=data["regularisation"],
                   validation_accuracy=data["validation_accuracy"])  # fmt: skip


def _tfidf(counts: Any, idf: np.ndarray) -> Any:
    """Sublinear tf times idf, rows scaled to unit length (as scikit-learn's TfidfVectorizer)."""
    from sklearn.preprocessing import normalize

    weighted = counts.astype(np.float64).tocsr()
    weighted.data = 1.0 + np.log(weighted.data)
    return normalize(weighted.multiply(idf).tocsr())


def fit(
    train: pd.Series, train_labels: np.ndarray, val: pd.Series, val_labels: np.ndarray, classes: int, seed: int
) -> NgramModel:
    """Both linear models at each regularisation strength, fitted on `train` (token lists); the
    one with the best accuracy on `val` (ties: the smaller C). Every candidate shares one
    vocabulary, so the validation texts are counted once."""
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer(analyzer=ngrams)
    counts = vectorizer.fit_transform(train)
    vocabulary = vectorizer.get_feature_names_out().tolist()
    val_counts = vectorizer.transform(val)
    candidates = []
    for strength in REGULARISATION:
        candidates.append(_fit_nbsvm(counts, train_labels, classes, strength, seed, vocabulary))
        candidates.append(_fit_tfidf(counts, train_labels, strength, seed, vocabulary))
    for model in candidates:
        model.validation_accuracy = float((model.scores_of_counts(val_counts).argmax(axis=1) == val_labels).mean())
    return max(candidates, key=lambda m: (m.validation_accuracy, -m.regularisation))


def _fit_nbsvm(counts: Any, labels: np.ndarray, classes: int, strength: float, seed: int, vocabulary: list[str]) -> NgramModel:
    from sklearn.linear_model import LogisticRegression

    binary = (counts > 0).astype(np.float64).tocsr()
    ratios, coefs, intercepts = [], [], []
    for c in range(classes):
        mine = labels == c
        p = NB_SMOOTHING + np.asarray(binary[mine].sum(axis=0)).ravel()
        q = NB_SMOOTHING + np.asarray(binary[~mine].sum(axis=0)).ravel()
        ratio = np.log((p / p.sum()) / (q / q.sum()))
        regression = LogisticRegression(C=strength, max_iter=1000, random_state=seed)
        regression.fit(binary.multiply(ratio).tocsr(), mine.astype(int))
        ratios.append(ratio)
        coefs.append(regression.coef_[0])
        intercepts.append(regression.intercept_[0])
    return NgramModel("nbsvm", vocabulary, np.array(ratios), np.array(coefs), np.array(intercepts), strength, 0.0)


def _fit_tfidf(counts: Any, labels: np.ndarray, strength: float, seed: int, vocabulary: list[str]) -> NgramModel:
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.linear_model import LogisticRegression

    transformer = TfidfTransformer(sublinear_tf=True).fit(counts)
    regression = LogisticRegression(C=strength * 10, max_iter=1000, random_state=seed)
    regression.fit(_tfidf(counts, transformer.idf_), labels)
    coef, intercept = regression.coef_, regression.intercept_
    if coef.shape[0] == 1:  # two classes: scikit-learn keeps one row, the second class's score
        coef, intercept = np.vstack([-coef, coef]) / 2, np.array([-intercept[0], intercept[0]]) / 2
    return NgramModel("tfidf", vocabulary, transformer.idf_[None], coef, intercept, strength * 10, 0.0)
