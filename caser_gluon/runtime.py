"""Devices and random seeds: what the chapter's ``d2l.try_all_gpus()`` does.

The chapter trains on ``d2l.try_all_gpus()``, which is ``[]`` on a machine
without a GPU. :func:`resolve_devices` turns a ``--devices`` string into
contexts when it is called (never at import time) and falls back to the
CPU. :func:`set_seed` and :func:`seed_epoch` make a run reproducible: one
``seed`` fixes the initialisation, and ``(seed, epoch)`` fixes an epoch's
batch order, negatives and dropout, so a resumed run draws what an
uninterrupted one would.
"""
import random
import signal
import threading

import mxnet as mx
import numpy as onp

__all__ = ['catch_interrupts', 'check_interrupted', 'resolve_devices',
           'seed_epoch', 'set_seed']


def resolve_devices(spec='auto'):
    """Turn a ``--devices`` string into a list of contexts.

    Parameters
    ----------
    spec : str
        ``auto`` (every GPU, else one CPU), ``all`` (every GPU; an error
        without one), ``cpu``, ``cpu:N`` (``N`` CPU contexts, which MXNet
        treats as separate devices), ``gpu:0,1`` (those GPUs).

    Returns
    -------
    list of mxnet.Context

    Raises
    ------
    ValueError
        Naming the flag, for a spec that is not understood or a GPU that
        does not exist.
    """
    spec = str(spec).strip().lower()
    num_gpus = mx.context.num_gpus()
    if spec == 'auto':
        return [mx.gpu(i) for i in range(num_gpus)] or [mx.cpu()]
    if spec == 'all':
        if not num_gpus:
            raise ValueError('--devices all: no GPU found (this MXNet sees '
                             '0 GPUs); use cpu or cpu:N')
        return [mx.gpu(i) for i in range(num_gpus)]
    kind, _, rest = spec.partition(':')
    if kind == 'cpu':
        if not rest:
            return [mx.cpu()]
        if rest.isdigit() and 1 <= int(rest) <= 64:
            return [mx.cpu(i) for i in range(int(rest))]
    elif kind == 'gpu' and rest:
        ids = rest.split(',')
        if all(i.isdigit() for i in ids):
            missing = [i for i in ids if int(i) >= num_gpus]
            if missing:
                raise ValueError(f'--devices {spec}: gpu {missing[0]} does '
                                 f'not exist ({num_gpus} GPUs found)')
            return [mx.gpu(int(i)) for i in ids]
    raise ValueError(f'--devices {spec!r} not understood: use auto, all, '
                     'cpu, cpu:N (N <= 64) or gpu:I,J')


def set_seed(seed):
    """Seed Python, NumPy's global RNG and MXNet (all devices)."""
    random.seed(seed)
    onp.random.seed(seed)
    mx.random.seed(seed)


def seed_epoch(seed, epoch):
    """The random streams of one epoch: ``(seed, epoch)`` fixes them.

    Seeds MXNet (dropout) and returns NumPy's generator for the batch order
    and the negatives.

    Returns
    -------
    numpy.random.Generator
    """
    if seed is None:
        return onp.random.default_rng()
    mx.random.seed(seed * 10_007 + epoch)
    return onp.random.default_rng([seed, epoch])


_INTERRUPTED = threading.Event()


def catch_interrupts():
    """Make Ctrl-C stop training even when it lands in a destructor.

    Python raises ``KeyboardInterrupt`` wherever the main thread is; inside
    a ``__del__`` (MXNet frees arrays in them all the time) it is printed
    and dropped, and training went on. The handler installed here records
    the signal, raises it where it can, and leaves it to
    :func:`check_interrupted` (called by the loops once per batch) inside a
    destructor. Main thread only; a no-op elsewhere.
    """
    _INTERRUPTED.clear()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _interrupt)


def _interrupt(signum, frame):
    _INTERRUPTED.set()
    while frame is not None:            # inside a destructor Python would
        if frame.f_code.co_name == '__del__':     # print and drop it: the
            return                      # loop raises it at its next batch
        frame = frame.f_back
    raise KeyboardInterrupt


def check_interrupted():
    """Raise ``KeyboardInterrupt`` if Ctrl-C came since
    :func:`catch_interrupts` (and was dropped where it landed)."""
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt
