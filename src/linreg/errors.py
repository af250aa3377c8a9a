"""Errors that are the user's to fix: they are shown as one line, without a traceback."""


class ConfigError(ValueError):
    """A setting or an input file is wrong; the message names it and the fix."""


class DivergedError(RuntimeError):
    """Training blew up; the message names the learning rate and a stable range."""


class RunInterrupted(RuntimeError):
    """Ctrl-C or SIGTERM stopped the run; a checkpoint was saved to resume from."""


def indivisible_batch(batch_size: int, world: int) -> ConfigError:
    """The global batch is cut into one equal share per device, so it must divide by their number."""
    return ConfigError(
        f"data.batch_size={batch_size} is the global batch and must divide by the {world} devices; "
        f"use a multiple of {world}"
    )
