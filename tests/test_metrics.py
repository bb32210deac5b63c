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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_validation_metrics_on_the_device_match_scikit_learn(seed):
    import torch
    import torch.nn.functional as F
    from sklearn.metrics import f1_score

    from harness.training.metrics import validation_metrics

    generator = torch.Generator().manual_seed(seed)
    logits, y = torch.randn(57, 6, generator=generator), torch.randint(0, 5, (57,), generator=generator)  # class 5 absent
    got = validation_metrics(logits, y, 6)
    pred = logits.argmax(1).numpy()
    assert got["val_macro_f1"] == pytest.approx(f1_score(y.numpy(), pred, labels=range(6), average="macro", zero_division=0))
    assert got["val_accuracy"] == pytest.approx(float((pred == y.numpy()).mean()))
    assert got["val_loss"] == pytest.approx(F.cross_entropy(logits, y).item())


def test_a_run_with_a_validation_split_records_validation_metrics_per_epoch():
    from harness.data.catalog import load_catalog
    from harness.runs.run import Run

    from conftest import run_named

    run = Run("small_cnn", "synthetic", 3, 1, 1, overrides=(("recipe.val_fraction", 0.2),))
    record = run_named(run, load_catalog().get("synthetic"))
    assert [row["epoch"] for row in record.curves] == [1, 2, 3]
    for row in record.curves:
        assert 0 <= row["val_accuracy"] <= 1 and 0 <= row["val_macro_f1"] <= 1 and row["val_loss"] > 0
    assert record.n_val > 0
