import numpy as np
import pytest

from harness.training.metrics import classification_metrics


def test_metrics_match_hand_computed_values():
    m = classification_metrics(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0]), num_classes=4)
    assert m["accuracy"] == pytest.approx(3 / 5)
    # class 0: P=1/2 R=1/2 -> 0.5; class 1: P=2/3 R=1 -> 0.8; classes 2 and 3: 0
    assert m["per_class_f1"] == pytest.approx([0.5, 0.8, 0.0, 0.0])
    assert m["macro_f1"] == pytest.approx(1.3 / 4)
    assert m["confusion"] == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
