"""Optimisers beyond MXNet's: the authors' Adam (``--optimizer torchadam``).

Not in the chapter, which trains with MXNet's ``adam``. The paper's code
trains with PyTorch's Adam, which places epsilon differently; importing
this module registers :class:`TorchAdam` with MXNet under the name
``torchadam`` (once: a module is imported once, whereas ``python -m
caser_gluon.train`` runs ``train.py`` twice).
"""
import contextlib
import os
import threading

import mxnet as mx

__all__ = ['LAZY', 'LazyAdam', 'LazyRows', 'LazyTorchAdam', 'TorchAdam']


@mx.optimizer.register
class TorchAdam(mx.optimizer.Adam):
    """Adam with epsilon added to the bias-corrected ``sqrt(v)``.

    PyTorch's ``torch.optim.Adam`` (the authors' optimiser) divides by
    ``sqrt(v / (1 - beta2^t)) + eps``; MXNet's ``adam`` by ``sqrt(v) +
    eps`` after folding the correction into the learning rate, a larger
    effective epsilon early in training. Scaling epsilon by ``sqrt(1 -
    beta2^t)`` at step ``t`` makes the two updates equal
    (``--optimizer torchadam``).
    """

    def update(self, index, weight, grad, state):
        t = self._index_update_count.get(index, 0) + 1
        if not hasattr(self, 'base_epsilon'):
            self.base_epsilon = self.epsilon
        self.epsilon = self.base_epsilon * (1.0 - self.beta2 ** t) ** 0.5
        super().update(index, weight, grad, state)


class LazyRows:
    """Mixin: lazy updates of some parameters (lazy Adam).

    The parameters named in :attr:`lazy_names` (embedding tables, set by
    :func:`~caser_gluon.train.fit`) get their gradient as a row-sparse
    array (the rows a batch looked up, found by MXNet's ``cast_storage``
    without stopping the engine), and MXNet's ``adam_update`` with
    ``lazy_update=True`` updates their weights and moments on those rows
    only: rows outside the batch keep theirs, as in TensorFlow's LazyAdam.
    Every other parameter is updated as by the optimizer mixed with.
    """

    lazy_names = frozenset()

    def update(self, index, weight, grad, state):
        if self.param_dict[index].name not in self.lazy_names:
            super().update(index, weight, grad, state)
            return
        grad = grad.as_nd_ndarray().tostype('row_sparse')
        weight = weight.as_nd_ndarray()
        state = tuple(s.as_nd_ndarray() for s in state)
        first = threading.get_ident() not in _LAZY_THREADS
        _LAZY_THREADS.add(threading.get_ident())
        with _silent_stderr() if first else contextlib.nullcontext():
            super().update(index, weight, grad, state)


#: threads that ran a lazy update (MXNet's notice is printed once each)
_LAZY_THREADS = set()


@contextlib.contextmanager
def _silent_stderr():
    """File descriptor 2 to /dev/null for a moment.

    MXNet writes an INFO line to stderr (from C++, once per thread) the
    first time a lazy update runs, which would break the command line's
    promise of one line per error; the README documents the behaviour.
    """
    saved = os.dup(2)
    try:
        with open(os.devnull, 'w') as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class LazyAdam(LazyRows, mx.optimizer.Adam):
    """MXNet's ``adam`` with :class:`LazyRows`."""


class LazyTorchAdam(LazyRows, TorchAdam):
    """:class:`TorchAdam` with :class:`LazyRows`."""


#: optimizer name -> its lazy-row class
LAZY = {'adam': LazyAdam, 'torchadam': LazyTorchAdam}
