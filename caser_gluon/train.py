"""Training the chapter's Caser: the loops.

``python -m caser_gluon.train`` is ``caser-gluon train`` (see ``--help``).

This module is the chapter's "Training the Model" section. Two loops train
any model of the package (``Caser`` and the session-based ones) on a
``SeqDataset``:

* :func:`fit` (``--loop fast``, default): the chapter's structure (split
  each batch over the devices with ``split_and_load``, forward every shard
  under ``autograd.record()``, backward, ``trainer.step(batch_size)``), with
  each sequence encoded once to score its targets and negatives together,
  negatives drawn for a whole batch with vectorised NumPy, a numerically
  stable loss, and an honest loss and throughput;
* :func:`fit_d2l` (``--loop d2l``): the chapter's own path, a
  ``DataLoader`` over ``SeqDataset`` and ``d2l.train_ranking`` with
  ``d2l.BPRLoss``.

The loops know nothing of files: each epoch's record goes to an
``on_epoch`` callback, which the command line wires to the run folder
(metrics, checkpoints; :mod:`caser_gluon.runs`).
"""
import time

import mxnet as mx
import numpy as onp
from mxnet import autograd, gluon, np, npx

from .data import sample_negatives
from .losses import LOSSES
from .optimizers import TorchAdam  # noqa: F401  (registers 'torchadam')
from .progress import Progress
from .runtime import seed_epoch

__all__ = ['fit', 'fit_d2l', 'make_trainer', 'train_epoch']

npx.set_np()


def make_trainer(net, *, lr, wd, optimizer, kvstore, rescale_grad=1.0):
    """A ``gluon.Trainer`` over all of ``net``'s parameters.

    Parameters
    ----------
    net : gluon.Block
    lr, wd : float
        Learning rate and weight decay.
    optimizer : str
        A gluon optimizer name (``'adam'`` in the chapter; ``'torchadam'``:
        :class:`~caser_gluon.optimizers.TorchAdam`, PyTorch's epsilon).
    kvstore : str or mxnet.kvstore.KVStore
        How the gradients of several devices or workers are summed.
    rescale_grad : float
        Extra gradient scale (``1 / workers`` on a parameter server).
    """
    params = {'learning_rate': lr, 'wd': wd}
    if rescale_grad != 1.0:
        params['rescale_grad'] = rescale_grad
    # a list in the model's own order: given a dict, Trainer sorts the
    # parameters by name, and automatic names ('embedding9', 'embedding10')
    # sort differently from one model instance to the next, which would
    # give a resumed run's optimizer states to the wrong parameters
    return gluon.Trainer(list(net.collect_params().values()), optimizer,
                         params, kvstore=kvstore)


def _batches(dataset, *, batch_size, rng, num_negatives):
    """Shuffled mini-batches ``(users, seqs, items)`` as NumPy arrays.

    ``items`` is ``(batch_size, T + N)``: the ``T`` targets, then ``N``
    negatives drawn for the whole batch at once, never one of the user's
    training items (``N = 0``: none).
    """
    order = rng.permutation(len(dataset))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        users = dataset.seq_users[idx]
        items = dataset.seq_tgt[idx]
        if num_negatives:
            negatives = sample_negatives(onp.repeat(users, num_negatives),
                                         dataset.seen, rng)
            items = onp.concatenate(
                [items, negatives.reshape(len(idx), -1)], axis=1)
        yield users, dataset.seq_items[idx], items.astype(onp.int32)


def train_epoch(net, dataset, trainer, *, batch_size, devices, rng, loss,
                num_negatives=None, progress=None, epoch=None):
    """One pass over ``dataset``; returns (mean loss per example, seconds).

    Each batch is split over ``devices``; every shard's sequence is encoded
    once and its targets and negatives scored together, ``(b, T + N)``
    (with the full softmax loss, every item is scored).

    Raises
    ------
    FloatingPointError
        If a batch's loss is NaN or infinite, naming the epoch and batch.
    """
    loss_fn = LOSSES[loss] if isinstance(loss, str) else loss
    full = getattr(loss_fn, 'full_softmax', False)
    T = dataset.seq_tgt.shape[1]
    num_negatives = 0 if full else (num_negatives or T)
    start, losses, count = time.perf_counter(), [], 0
    for users, seqs, items in _batches(dataset, batch_size=batch_size,
                                       rng=rng, num_negatives=num_negatives):
        shards = [gluon.utils.split_and_load(np.array(a), devices,
                                             even_split=False)
                  for a in (users, seqs, items)]
        with autograd.record():
            ls = []
            for u, s, it in zip(*shards):
                if full:                        # every item: (b, num_items)
                    ls.append(loss_fn(net.all_item_scores()(u, s), it))
                    continue
                scores = net(u, s, it)                      # (b, T + N)
                ls.append(loss_fn(scores[:, :T], scores[:, T:]))
        for part in ls:
            part.backward()
        trainer.step(len(users))
        losses.append(sum(part.sum().as_in_ctx(mx.cpu()) for part in ls))
        count += len(users)
        if progress is not None:
            progress.update(len(users))
    per_batch = np.stack(losses).asnumpy()     # one sync, at the end
    bad = onp.flatnonzero(~onp.isfinite(per_batch))
    if len(bad):
        raise FloatingPointError(
            f'epoch {epoch}, batch {bad[0] + 1}: the loss is '
            f'{per_batch[bad[0]]}; training stopped (try a smaller --lr)')
    return float(per_batch.sum()) / count, time.perf_counter() - start


def fit(net, dataset, trainer, *, num_epochs, batch_size, devices, seed,
        loss, num_negatives=None, evaluate=None, on_epoch=None, quiet=False,
        start_epoch=1):
    """Train with :func:`train_epoch`, evaluating after each epoch.

    Parameters
    ----------
    net : SequentialRecommender
    dataset : SeqDataset
    trainer : gluon.Trainer
    num_epochs, batch_size : int
    devices : list of mxnet.Context
    seed : int or None
        With the epoch, seeds the batch order, negatives and dropout.
    loss : str or callable
        A name of ``losses.LOSSES`` or a per-window loss function.
    num_negatives : int, optional
        Negatives per window (default: one per target).
    evaluate : callable, optional
        ``evaluate(net) -> dict`` of metrics.
    on_epoch : callable, optional
        Called with each epoch's record (a dict), e.g. to save it; when it
        returns ``'stop'``, training stops (early stopping).
    quiet : bool
        No progress.
    start_epoch : int
        First epoch to run (after a resumed checkpoint).

    Returns
    -------
    list of dict
        Per epoch run: ``epoch``, ``train_loss``, ``train_seconds``,
        ``examples_per_sec``, ``eval_seconds`` and the metrics of
        ``evaluate``.
    """
    history = []
    for epoch in range(start_epoch, num_epochs + 1):
        bar = Progress(len(dataset), desc=f'epoch {epoch}/{num_epochs}',
                       quiet=quiet)
        try:
            loss_value, seconds = train_epoch(
                net, dataset, trainer, batch_size=batch_size,
                devices=devices, rng=seed_epoch(seed, epoch), loss=loss,
                num_negatives=num_negatives, progress=bar, epoch=epoch)
        finally:
            bar.close()
        record = {'epoch': epoch, 'train_loss': loss_value,
                  'train_seconds': seconds,
                  'examples_per_sec': len(dataset) / seconds}
        if evaluate is not None:
            start = time.perf_counter()
            record.update(evaluate(net))
            record['eval_seconds'] = time.perf_counter() - start
        history.append(record)
        if on_epoch is not None and on_epoch(record) == 'stop':
            break
    return history


def fit_d2l(net, dataset, trainer, *, num_epochs, batch_size, devices,
            test_input, candidates, evaluator, num_workers=0,
            on_epoch=None):
    """Train with ``d2l.train_ranking`` exactly as the chapter calls it.

    ``evaluator`` (this package's ``evaluate_ranking``, or
    ``d2l.evaluate_ranking`` for the chapter's own) is wrapped to record
    each epoch's hit rate and AUC, and to stop when the model's scores are
    no longer finite (d2l would go on and rank NaN scores).

    Returns
    -------
    list of dict
        Per epoch: ``epoch``, ``hit_rate``, ``auc``.

    Raises
    ------
    FloatingPointError
        When a parameter is NaN or infinite after an epoch.
    """
    from d2l import mxnet as d2l
    history = []

    def recording_evaluator(*args):
        _check_finite(net, epoch=len(history) + 1)
        hit_rate, auc = evaluator(*args)
        record = {'epoch': len(history) + 1, 'hit_rate': float(hit_rate),
                  'auc': float(auc)}
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        return hit_rate, auc

    train_iter = gluon.data.DataLoader(dataset, batch_size, shuffle=True,
                                       last_batch='rollover',
                                       num_workers=num_workers)
    d2l.train_ranking(net, train_iter, test_input, d2l.BPRLoss(), trainer,
                      dataset.test_seq, dataset.num_users, dataset.num_items,
                      num_epochs, devices, recording_evaluator, candidates,
                      eval_step=1)
    return history


def _check_finite(net, *, epoch):
    """Raise FloatingPointError naming a parameter that is not finite."""
    for name, param in net.collect_params().items():
        values = param.list_data()[0]
        if not bool(np.isfinite(values).all()):
            raise FloatingPointError(
                f'epoch {epoch}: parameter {name} is NaN or infinite; '
                'training stopped (try a smaller --lr)')


if __name__ == '__main__':       # an entry point, not an import of the cli
    import sys

    from .cli import main
    main(['train', *sys.argv[1:]])
