"""A callback that sends this process a real SIGTERM at a chosen step, to interrupt a run mid-epoch.

A training step takes a chunk of optimizer steps (data.steps_per_call): the signal goes at the end of the one that
reaches ``step``, and the run stops there, at a chunk's end."""

import os
import signal

import lightning as L


class SigtermAtStep(L.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        first = trainer.global_step - len(outputs["loss"])  # the chunk's first optimizer step
        if first < self.step <= trainer.global_step:  # not again in a run resumed past it
            os.kill(os.getpid(), signal.SIGTERM)
