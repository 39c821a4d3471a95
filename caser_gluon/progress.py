"""Progress of a long epoch, in a terminal and in a log file.

Not in the chapter. In a terminal an epoch shows a tqdm bar; when the
output goes to a file (the usual way to run a long training) a bar
prints nothing useful, so a line is printed every few seconds instead,
with the examples per second and the time left.
"""
import sys
import time

from tqdm.auto import tqdm

__all__ = ['Progress']


class Progress:
    """Count examples; show a bar in a terminal, else a line now and then.

    Parameters
    ----------
    total : int
        Examples in the epoch.
    desc : str
        What is counted, e.g. ``'epoch 3/8'``.
    quiet : bool
        Show nothing.
    every : float
        Seconds between lines when ``stream`` is not a terminal.
    stream : file
        Where to write (standard error by default).
    """

    def __init__(self, total, *, desc, quiet=False, every=10.0,
                 stream=None):
        self.stream = stream or sys.stderr
        self.total, self.desc, self.every = total, desc, every
        self.done, self.start = 0, time.perf_counter()
        self.last = self.start
        self.lines = not quiet and not self.stream.isatty()
        self.bar = tqdm(total=total, desc=desc, unit='ex', leave=False,
                        file=self.stream,
                        disable=quiet or not self.stream.isatty())

    def update(self, count):
        """Add ``count`` examples done."""
        self.done += count
        self.bar.update(count)
        now = time.perf_counter()
        if self.lines and now - self.last >= self.every:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / max(rate, 1e-9)
            print(f'{self.desc}: {self.done}/{self.total} examples, '
                  f'{rate:.3g}/s, {eta:.0f} s left', file=self.stream,
                  flush=True)

    def close(self):
        """Remove the bar."""
        self.bar.close()
