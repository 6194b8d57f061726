"""Progress of the long steps of a run (reading data, validation, evaluation, rollouts, generating data).

On a terminal a step shows a `keras.utils.Progbar` under a line naming it; when standard output is a file or a pipe
(a log), each step writes exactly one line when it ends: what was done, how many, how long, and any rates, e.g.

    validation: 240 pairs in 1.3 s (185 pairs/s)

Keras is imported only when a bar is drawn, so the data package can report progress without loading a framework
until it has something to show.
"""

from __future__ import annotations

import sys
import time

__all__ = ["Progress", "is_terminal"]


def is_terminal(stream=None) -> bool:
    """Whether `stream` (default standard output) is an interactive terminal."""
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """Progress of one step of `total` units.

    Args:
        total: units to do (e.g. batches, trajectories).
        label: what is done, e.g. `"validation"`.
        unit: name of a unit, e.g. `"batches"`.
        enabled: False: nothing is written.
        bar: draw a bar (default: when standard output is a terminal); otherwise one line at `close`.

    Example:
        >>> with Progress(10, "reading train", "trajectories") as p:  # doctest: +SKIP
        ...     for i in range(10):
        ...         p.update(i + 1, MB_per_s=12.5)
    """

    def __init__(self, total, label: str, unit: str = "", enabled: bool = True, bar: bool | None = None):
        self.total = max(int(total), 0)
        self.label, self.unit, self.enabled = label, unit, bool(enabled)
        self.bar = is_terminal() if bar is None else bool(bar)
        self.done = 0
        self.values: dict = {}
        self.start = time.perf_counter()
        self._progbar = None
        self._closed = False
        if self.enabled and self.bar:
            from keras.utils import Progbar

            print(f"{label} ({self.total} {unit})".rstrip(), flush=True)
            self._progbar = Progbar(self.total or None, unit_name=unit.rstrip("s") or "step")

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def update(self, done, **values):
        """`done` units finished so far; `values` (name -> number) are shown beside the bar and in the line."""
        self.done = int(done)
        self.values.update(values)
        if self._progbar is not None:
            self._progbar.update(min(self.done, self.total) if self.total else self.done,
                                 values=[(k, float(v)) for k, v in self.values.items()])

    def close(self, note: str = "") -> str:
        """End the step; returns (and, in line mode, prints) its summary line. `note` is appended to it."""
        secs = self.seconds
        line = f"{self.label}: {self.done}"
        if self.total and self.done != self.total:
            line += f" of {self.total}"
        line += f" {self.unit}".rstrip() + f" in {secs:.1f} s"
        rates = [f"{v:.3g} {k.replace('_per_', '/')}" for k, v in self.values.items()]
        if rates:
            line += f" ({', '.join(rates)})"
        if note:
            line += f" {note}"
        if self.enabled and not self._closed:
            if self._progbar is not None:
                if self.done < self.total:  # stopped early: end the bar where it is, and say so
                    print(flush=True)
                    print(line, flush=True)
                else:
                    self._progbar.update(self.done, values=[(k, float(v)) for k, v in self.values.items()],
                                         finalize=True)
            else:
                print(line, flush=True)
        self._closed = True
        return line

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
