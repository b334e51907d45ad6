"""How a classifier is scored: accuracy, macro-F1 and per-class precision and recall."""

from __future__ import annotations

import numpy as np


def classification_metrics(truth: np.ndarray, predicted: np.ndarray, labels: list[str]) -> dict[str, float]:
    """Accuracy, macro-F1 and per-class precision and recall (0 where undefined)."""
    metrics = {"accuracy": float((truth == predicted).mean())}
    f1s = []
    per_class = {}
    for i, name in enumerate(labels):
        true_positive = int(((predicted == i) & (truth == i)).sum())
        predicted_i, actual_i = int((predicted == i).sum()), int((truth == i).sum())
        precision = true_positive / predicted_i if predicted_i else 0.0
        recall = true_positive / actual_i if actual_i else 0.0
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
        per_class[f"precision_{name}"], per_class[f"recall_{name}"] = precision, recall
    metrics["macro_f1"] = float(np.mean(f1s))
    metrics.update(per_class)
    return metrics
