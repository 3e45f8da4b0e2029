r"""A dependency-free progress bar for the command line (no tqdm needed)."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["Progress"]


def _fmt_time(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:4.1f}s"
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}"


class Progress:
    """Progress of a loop of known length, drawn on ``stream`` (default ``stderr``).

    On a terminal the bar is redrawn in place at most every ``min_interval`` seconds; on
    anything else (logs, CI, pipes) one line is printed per ``log_every`` fraction of the
    work, so logs stay short. ``set(**values)`` attaches numbers (loss, ...) shown after
    the bar. Use it as a context manager or call `close`.

    Args:
        total: Number of units of work (``>= 1``).
        desc: Short label printed before the bar.
        stream: Where to draw (default ``sys.stderr``).
        enabled: ``False`` draws nothing (``--quiet``).
        width: Characters of the bar itself.
        min_interval: Minimum seconds between two redraws on a terminal.
        log_every: Fraction of the work between two lines when not on a terminal.

    Example:
        >>> with Progress(3, "work", enabled=False) as bar:
        ...     for _ in range(3):
        ...         bar.update(loss=0.5)
    """

    def __init__(
        self,
        total: int,
        desc: str = "",
        *,
        stream: TextIO | None = None,
        enabled: bool = True,
        width: int = 24,
        min_interval: float = 0.1,
        log_every: float = 0.25,
    ):
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise ValueError(f"total must be an int >= 1, got {total!r}")
        self.total = total
        self.desc = desc
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.width = width
        self.min_interval = min_interval
        self.log_every = log_every
        self.n = 0
        self.values: dict[str, Any] = {}
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._next_log = 0.0
        isatty = getattr(self.stream, "isatty", None)
        self._tty = bool(isatty()) if callable(isatty) else False
        self._closed = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def elapsed(self) -> float:
        """Seconds since the bar was created."""
        return time.perf_counter() - self.start

    def set(self, **values: Any) -> None:
        """Attach values shown after the bar (floats are printed with 4 significant digits)."""
        self.values.update(values)

    def update(self, n: int = 1, **values: Any) -> None:
        """Advance by ``n`` units (and optionally `set` values)."""
        self.n = min(self.total, self.n + n)
        if values:
            self.values.update(values)
        if not self.enabled:
            return
        now = time.perf_counter()
        frac = self.n / self.total
        if self._tty:
            if now - self._last_draw >= self.min_interval or self.n == self.total:
                self._last_draw = now
                self.stream.write("\r" + self.render())
                self.stream.flush()
        elif frac >= self._next_log or self.n == self.total:
            while self._next_log <= frac:
                self._next_log += self.log_every
            self.stream.write(self.render() + "\n")
            self.stream.flush()

    def render(self) -> str:
        """The current bar as one line (no line terminator)."""
        frac = self.n / self.total
        filled = int(round(frac * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = self.elapsed
        eta = elapsed / self.n * (self.total - self.n) if self.n else 0.0
        extra = " ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.values.items()
        )
        digits = len(str(self.total))
        line = (
            f"{self.desc:<7}[{bar}] {self.n:>{digits}}/{self.total} {frac:4.0%} "
            f"{_fmt_time(elapsed)} (eta {_fmt_time(eta)})"
        )
        return f"{line}  {extra}" if extra else line

    def close(self) -> None:
        """Finish the line (on a terminal)."""
        if self._closed:
            return
        self._closed = True
        if self.enabled and self._tty:
            self.stream.write("\r" + self.render() + "\n")
            self.stream.flush()
