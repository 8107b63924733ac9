"""The RecordedCallback interface: what train() writes to results.json and gives back on resume."""
import json
import os

import keras
import numpy as np
import pytest

from tfwd.train import RecordedCallback, TrainConfig, train

TINY = dict(dataset="mnist", model="mlp", model_kwargs={"depth": 1, "width": 16},
            batch_size=1000, verbose=0, seed=0, optimizer="sgd", learning_rate=0.1)


class OutputKernelNorm(RecordedCallback):
    """Records ‖W‖_F of the model's last Dense kernel after every epoch."""

    def __init__(self):
        super().__init__("output_kernel_norm")

    def on_epoch_end(self, epoch, logs=None):
        kernel = [layer for layer in self.model.layers if isinstance(layer, keras.layers.Dense)][-1]
        self.history[epoch + 1] = float(np.linalg.norm(keras.ops.convert_to_numpy(kernel.kernel)))


class LooksRecorded(keras.callbacks.Callback):
    """Has the attributes of a recorded callback, but does not implement the interface."""

    diagnostic_name = "looks_recorded"

    def __init__(self):
        super().__init__()
        self.history = {1: "never written"}


def test_restore_history_keeps_the_epochs_before_the_checkpoint_with_int_keys():
    callback = OutputKernelNorm()
    callback.restore_history({"1": 0.5, "2": 0.7, "3": 0.9}, epochs_done=2)
    assert callback.history == {1: 0.5, 2: 0.7}


def test_a_recorded_callback_must_say_what_it_records_per_epoch():
    class RecordsNothing(RecordedCallback):
        pass

    with pytest.raises(TypeError, match="on_epoch_end"):
        RecordsNothing("nothing")


def test_train_records_and_resumes_only_recorded_callbacks(tmp_path):
    first = OutputKernelNorm()
    train(TrainConfig.from_flat(**TINY, epochs=1), str(tmp_path), callbacks=[first, LooksRecorded()])
    resumed = OutputKernelNorm()  # a new process would build a new callback
    results = train(TrainConfig.from_flat(**TINY, epochs=2), str(tmp_path), callbacks=[resumed])
    with open(os.path.join(tmp_path, "results.json")) as handle:
        on_disk = json.load(handle)
    assert set(on_disk["diagnostics"]) == {"output_kernel_norm"}
    history = on_disk["diagnostics"]["output_kernel_norm"]
    assert history["1"] == first.history[1]  # given back to the resumed run, not re-measured
    # The value after the last epoch is the norm of the weights the finished run saved.
    model = keras.saving.load_model(os.path.join(tmp_path, "model.keras"))
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][-1]
    assert history["2"] == pytest.approx(
        float(np.sqrt(np.sum(np.square(dense.get_weights()[0])))), rel=1e-6)
    assert results["diagnostics"]["output_kernel_norm"] == resumed.history
