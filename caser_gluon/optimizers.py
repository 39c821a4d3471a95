"""Optimisers beyond MXNet's: the authors' Adam (``--optimizer torchadam``).

Not in the chapter, which trains with MXNet's ``adam``. The paper's code
trains with PyTorch's Adam, which places epsilon differently; importing
this module registers :class:`TorchAdam` with MXNet under the name
``torchadam`` (once: a module is imported once, whereas ``python -m
caser_gluon.train`` runs ``train.py`` twice).
"""
import mxnet as mx

__all__ = ['TorchAdam']


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
