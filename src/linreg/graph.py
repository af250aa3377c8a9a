"""The model's computation graph in TensorBoard's Graphs tab, logged once per run.

Lightning's TensorBoardLogger can draw it (``log_graph=True`` in conf/logger) but leaves calling ``log_graph`` to
the user; this callback calls it once, with one example row of zeros, when training starts.
"""

from __future__ import annotations

import warnings

import lightning as L
import torch


class LogGraph(L.Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.logger is None or not hasattr(trainer.logger, "log_graph"):
            return
        p = next(pl_module.parameters())
        example = torch.zeros(1, pl_module.hparams.in_features, dtype=p.dtype, device=p.device)
        with warnings.catch_warnings():  # add_graph traces with torch.jit.trace, which torch 2.9+ calls deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            trainer.logger.log_graph(pl_module, example)
