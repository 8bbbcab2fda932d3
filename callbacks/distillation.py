"""`DistillationCallback`: attaches a distiller to the model and logs its loss terms per epoch."""

import keras


class DistillationCallback(keras.callbacks.Callback):
    """Registers `distiller` with the model (`set_model`) and adds the epoch means of its terms to the epoch logs
    (`distill_loss`, the KD term; `hidden_loss`, the hidden-state term), beside the task loss (`loss`).

    Args:
        distiller: a `pruners.Distiller`.
    """

    def __init__(self, distiller):
        super().__init__()
        self.distiller = distiller

    def set_model(self, model):
        super().set_model(model)
        self.distiller.attach(model)

    def on_epoch_begin(self, epoch, logs=None):
        self.distiller.reset_totals()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self.distiller.means())

    def resume_state(self):
        return self.distiller.resume_state()

    def restore_state(self, arrays, values):
        self.distiller.restore_state(arrays, values)
