"""Averaged parameters: the model of the last epochs, not of the last step.

Beyond the chapter. With a constant learning rate, the parameters after
each epoch wander around a good region: with the ``best`` recipe, one
user's validation HR@50 moves by about 0.01 from one epoch to the next.
Their mean over the last ``N`` epochs (stochastic weight averaging,
Izmailov et al., "Averaging Weights Leads to Wider Optima and Better
Generalization", UAI 2018) sits nearer the middle of that region:
``--average-last N`` makes the run's model that mean, evaluated once
training ends (``experiments/BEST.md`` chose ``N`` on validation data).

The mean is kept in NumPy, one copy of the parameters, updated after each
of the last ``N`` epochs; a checkpoint keeps it, so a resumed run averages
the same epochs.
"""
import mxnet as mx
import numpy as onp

__all__ = ['ParameterAverage']


class ParameterAverage:
    """The running mean of a model's parameters over epochs.

    Parameters
    ----------
    first_epoch : int
        The first epoch whose parameters enter the mean (``num_epochs - N
        + 1`` for the last ``N``).
    """

    def __init__(self, *, first_epoch):
        self.first_epoch, self.count, self.means = first_epoch, 0, {}

    @classmethod
    def last(cls, n, *, num_epochs):
        """The mean of the last ``n`` of ``num_epochs`` epochs (of all of
        them if there are fewer), or ``None`` for ``n = 0``."""
        return cls(first_epoch=max(1, num_epochs - n + 1)) if n else None

    def update(self, net, epoch):
        """Add ``net``'s parameters after ``epoch`` to the mean (epochs
        before ``first_epoch`` are left out)."""
        if epoch < self.first_epoch:
            return
        self.count += 1
        for name, param in _params(net).items():
            value = param.list_data()[0].asnumpy()   # first device's copy
            mean = self.means.setdefault(name, onp.zeros_like(value))
            mean += (value - mean) / self.count

    def copy_to(self, net):
        """Write the mean into ``net``'s parameters, on every device.

        In place: ``Parameter.set_data`` would reset the trainer's
        key-value store, which a parameter server refuses.
        """
        if not self.count:
            raise ValueError('no epoch has been averaged yet')
        for name, param in _params(net).items():
            for array in param.list_data():
                array[:] = mx.np.array(self.means[name], dtype=param.dtype,
                                       ctx=array.ctx)

    def state(self):
        """The mean, its count and first epoch as NumPy arrays (for a
        checkpoint)."""
        return {'count': onp.int64(self.count),
                'first_epoch': onp.int64(self.first_epoch),
                **{f'mean:{k}': v for k, v in self.means.items()}}

    def load_state(self, arrays, *, epoch):
        """Restore a :meth:`state` (a mapping of arrays, e.g. an ``.npz``)
        saved after ``epoch``.

        Raises
        ------
        ValueError
            If the saved mean is not the one this average would hold after
            ``epoch`` (its window moved: ``--epochs`` or ``--average-last``
            changed once an epoch of either window had passed).
        """
        first, count = int(arrays['first_epoch']), int(arrays['count'])
        if count != max(0, epoch - self.first_epoch + 1) or (
                count and first != self.first_epoch):
            raise ValueError(
                f'the saved average holds {count} epochs from epoch {first}'
                f', this run would hold epochs {self.first_epoch}-{epoch}: '
                'keep --epochs and --average-last as they were')
        self.count = count
        self.means = {k[len('mean:'):]: onp.array(arrays[k])
                      for k in arrays if k.startswith('mean:')}


def _params(net):
    """``net``'s parameters by structural name (as ``save_parameters``
    names them: the same in every process, whatever Gluon's prefixes)."""
    return net._collect_params_with_prefix()
