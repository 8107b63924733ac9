"""Weight-norm transfer: "wn-conv" of paper 000 §4.1, figure 4 (docs/equations.md §7, mechanism I).

Train one run *with* weight decay and record its per-layer kernel norms after every epoch
(the ``weight_norms`` diagnostic: ``{epoch: {layer: ‖w‖}}``, epoch = number of completed
epochs). Then train a run *without* decay and, after every epoch, rescale the chosen
batch-normalized layers (e.g. every conv layer) to the recorded norm of the same epoch. The
rescaling does not change the network's function (``layers.rescale_normalized_layer``), so it
sets the effective learning rate η/‖w‖² of the second run to that of the first. Add decay on
the top layer only for the "wd-fc + wn-conv" variant (an optimizer setting, not this callback).
"""
from __future__ import annotations

import json
import os
from typing import Mapping, Union

import keras

from tfwd.choices.diagnostics import Diagnostic
from tfwd.choices.layers import WEIGHT_NORM_LAYERS
from tfwd.diagnostics.layers import (
    LayerSelection,
    batch_normalized_layers,
    rescale_normalized_layer,
    select_layers,
)

NormHistory = Mapping[Union[int, str], Mapping[str, float]]


def load_norm_history(source: Union[str, os.PathLike, NormHistory]) -> dict[int, dict[str, float]]:
    """{epoch: {layer: norm}} from a mapping or a JSON file.

    Accepted files: a ``weight_norms`` history as the callback writes it, or a tfwd
    ``results.json`` (its ``diagnostics.weight_norms`` entry). JSON object keys are strings;
    they are turned back into integer epochs.
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source) as handle:
            source = json.load(handle)
        if "diagnostics" in source:
            source = source["diagnostics"]
        if Diagnostic.WEIGHT_NORMS in source:
            source = source[Diagnostic.WEIGHT_NORMS]
    return {int(epoch): {k: float(v) for k, v in norms.items()} for epoch, norms in source.items()}


class WeightNormTransfer(keras.callbacks.Callback):
    """After epoch e (1-based, completed epochs), set each chosen layer's kernel norm to
    ``target_norms[e][layer]``.

    Args:
      target_norms: {epoch: {layer: norm}} of the reference run, or a JSON file holding it
        (``load_norm_history``).
      layers: a ``layers.select_layers`` selection; default ``"conv"`` (wn-conv). Every chosen
        layer must be batch-normalized, otherwise rescaling would change the network.

    ``history``: {epoch: {layer: scale factor applied}}.
    COST: reads and writes the chosen weights once per epoch; no pass over data.
    """

    def __init__(self, target_norms, layers: LayerSelection = WEIGHT_NORM_LAYERS):
        super().__init__()
        self.target_norms = load_norm_history(target_norms)
        self.layers = layers
        self.history: dict[int, dict[str, float]] = {}
        self._pairs = None

    def set_model(self, model):
        super().set_model(model)
        chosen = [layer.name for layer in select_layers(model, self.layers)]
        if not chosen:
            raise ValueError(f"Layer selection {self.layers!r} matches no layer of {model.name!r}.")
        pairs = batch_normalized_layers(model)
        unnormalized = [name for name in chosen if name not in pairs]
        if unnormalized:
            raise ValueError(
                f"Layers {unnormalized} are not followed by batch norm, so rescaling them would "
                "change the network; transfer norms only to batch-normalized layers."
            )
        self._pairs = {name: pairs[name] for name in chosen}

    def on_epoch_end(self, epoch, logs=None):
        completed = epoch + 1
        if completed not in self.target_norms:
            raise ValueError(
                f"The reference norms have no entry for epoch {completed} (they cover "
                f"{sorted(self.target_norms)}); record them for at least as many epochs."
            )
        targets = self.target_norms[completed]
        missing = [name for name in self._pairs if name not in targets]
        if missing:
            raise ValueError(f"The reference norms of epoch {completed} lack layers {missing}.")
        self.history[completed] = {
            name: rescale_normalized_layer(pair, targets[name])
            for name, pair in self._pairs.items()
        }
