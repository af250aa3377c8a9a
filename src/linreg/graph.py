"""The model's computation graph in TensorBoard's Graphs tab, logged once per run.

Lightning's TensorBoardLogger(log_graph=True) would draw it from ``model.example_input_array`` when fit starts,
but that input is made before the model is on its device and skips the DataModule's device transfer (ours hands
batches through as they are), so on a GPU the trace would meet a CPU tensor. This callback hands TensorBoard's
``add_graph`` one row of zeros on the model's own device and dtype when training starts.
"""

from __future__ import annotations

import warnings

import lightning as L
import torch


class LogGraph(L.Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        writer = getattr(trainer.logger, "experiment", None)
        if not trainer.is_global_zero or not hasattr(writer, "add_graph"):
            return
        p = next(pl_module.parameters())
        example = torch.zeros(1, pl_module.hparams.in_features, dtype=p.dtype, device=p.device)
        with warnings.catch_warnings():  # add_graph traces with torch.jit.trace, which torch 2.9+ calls deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            writer.add_graph(pl_module, example)
