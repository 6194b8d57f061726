"""`upt-keras` that kills itself during training, to test resuming an interrupted run.

Usage: python tests/killed_cli.py EPOCH:BATCH[:SIGNAL] train --config ... (the arguments of `upt-keras` after it).

The process sends itself SIGKILL (or SIGNAL, e.g. INT or TERM) at the start of batch BATCH of epoch EPOCH (both
0-based). SIGKILL ends it as a crash or a killed job would: no Python cleanup runs, so the run directory is left as
such an interruption leaves it. SIGINT is Ctrl-C.
"""

import os
import signal
import sys

import keras

from upt_keras import cli, training


class KillAt(keras.callbacks.Callback):
    """SIGKILL (or `sig`) this process at the start of batch `batch` of epoch `epoch`."""

    def __init__(self, epoch, batch, sig=None):
        super().__init__()
        self.epoch, self.batch, self._current = int(epoch), int(batch), -1
        self.sig = getattr(signal, f"SIG{sig}") if sig else None

    def on_epoch_begin(self, epoch, logs=None):
        self._current = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self._current == self.epoch and batch == self.batch:
            sys.stdout.flush()
            sys.stderr.flush()
            if self.sig is not None:
                os.kill(os.getpid(), self.sig)
                return
            if hasattr(signal, "SIGKILL"):
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(137)  # platforms without SIGKILL


def main(argv):
    epoch, batch, sig = (argv[0].split(":") + ["", ""])[:3]
    train = training.train

    def killed_train(*args, **kwargs):
        kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + [KillAt(epoch, batch or 0, sig or None)]
        return train(*args, **kwargs)

    training.train = killed_train  # the command line calls training.train when it runs
    return cli.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
