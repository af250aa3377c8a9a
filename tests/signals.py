"""A callback that sends this process a real SIGTERM at a chosen step, to interrupt a run mid-epoch."""

import os
import signal

import lightning as L


class SigtermAtStep(L.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)
