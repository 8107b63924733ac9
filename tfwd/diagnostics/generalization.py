"""Generalization gap (paper 000 §4.2, figure 5: "the difference between training and test loss").

    gap = L_test − L_train,    L = mean softmax cross-entropy in inference mode

Sign convention: positive when the model fits the training batch better than the test batch
(the usual over-fitting direction; figure 5 correlates it positively with the Jacobian norm).
Both losses are returned too, so either sign can be recovered.
"""
from __future__ import annotations

import keras

from tfwd.choices.diagnostics import Diagnostic
from tfwd.diagnostics.common import mean_loss, require_labels, to_float


def generalization_gap(model: keras.Model, train_batch, test_batch) -> dict[str, float]:
    """{"train_loss", "test_loss", "gap" = test_loss − train_loss} on two (x, y) batches.

    COST: one forward pass over each batch.
    """
    (x_train, y_train), (x_test, y_test) = train_batch, test_batch
    require_labels(y_train, Diagnostic.GENERALIZATION_GAP)
    require_labels(y_test, Diagnostic.GENERALIZATION_GAP)
    train_loss = to_float(mean_loss(model, x_train, y_train))
    test_loss = to_float(mean_loss(model, x_test, y_test))
    return {"train_loss": train_loss, "test_loss": test_loss, "gap": test_loss - train_loss}
