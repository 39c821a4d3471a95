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
from .optimizers import LAZY, LazyRows
from .progress import Progress
from .recommender import MaskedScores
from .runtime import check_interrupted, seed_epoch

__all__ = ['fit', 'fit_d2l', 'lazy_tables', 'make_trainer',
           'masked_scorer', 'train_epoch', 'wants_lazy']

npx.set_np()


def make_trainer(net, *, lr, wd, optimizer, kvstore, rescale_grad=1.0,
                 lazy=False):
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
    lazy : bool
        The optimizer's :class:`~caser_gluon.optimizers.LazyRows` form,
        so that :func:`fit` may update embedding rows lazily
        (:func:`lazy_tables`; ``adam`` and ``torchadam`` only).
    """
    params = {'learning_rate': lr, 'wd': wd}
    if rescale_grad != 1.0:
        params['rescale_grad'] = rescale_grad
    if lazy:
        if optimizer not in LAZY:
            raise ValueError(f'--lazy-update on: needs --optimizer adam or '
                             f'torchadam, not {optimizer}')
        optimizer, params = LAZY[optimizer](**params), None
    # a list in the model's own order: given a dict, Trainer sorts the
    # parameters by name, and automatic names ('embedding9', 'embedding10')
    # sort differently from one model instance to the next, which would
    # give a resumed run's optimizer states to the wrong parameters
    return gluon.Trainer(list(net.collect_params().values()), optimizer,
                         params, kvstore=kvstore)


def wants_lazy(config):
    """Whether a :class:`~caser_gluon.config.TrainConfig` asks for the
    lazy form of its optimizer (``--lazy-update on``, or ``auto`` with
    ``adam``/``torchadam``)."""
    return config.lazy_update == 'on' or (config.lazy_update == 'auto'
                                          and config.optimizer in LAZY)


def lazy_tables(net, trainer, *, mode, ids_per_batch):
    """The embedding tables :func:`train_epoch` updates lazily.

    Parameters
    ----------
    net : SequentialRecommender
    trainer : gluon.Trainer
        From :func:`make_trainer`; without ``lazy=True``, none.
    mode : {'auto', 'on', 'off'}
        ``auto``: the tables with more than 4 times the row ids a batch
        holds for them (where a dense update costs more than a lazy one);
        ``on``: every table; ``off``: none.
    ids_per_batch : dict of str to int or None
        Row ids a batch holds per input (``users``, ``seqs``, ``items``);
        ``None``: every row has a gradient (the full softmax's items).

    Returns
    -------
    dict of str to str
        Parameter name -> the batch input holding its row ids.
    """
    if mode == 'off' or not isinstance(trainer.optimizer, LazyRows):
        return {}
    return {param.name: key
            for key, params in net.row_tables().items() for param in params
            if ids_per_batch[key] is not None
            and (mode == 'on' or param.shape[0] > 4 * ids_per_batch[key])}


def masked_scorer(net):
    """:class:`MaskedScores` over ``net``, hybridized as ``net`` is, or
    ``None`` when ``net`` draws its dropout itself (``mask_widths``)."""
    if not getattr(net, 'mask_widths', ()):
        return None
    scorer = MaskedScores(net)
    if net._active:        # Gluon's own record of net.hybridize(**flags)
        scorer.hybridize(**dict(net._flags))
    return scorer


def _batches(dataset, *, batch_size, rng, num_negatives, net=None):
    """Shuffled mini-batches ``(users, seqs, items, *masks)`` (NumPy).

    ``items`` is ``(batch_size, T + N)``: the ``T`` targets, then ``N``
    negatives drawn for the whole batch at once, never one of the user's
    training items (``N = 0``: none). ``masks``: ``net.draw_masks`` for
    the batch, if ``net`` is given.
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
        masks = net.draw_masks(rng, len(idx)) if net is not None else []
        yield (users, dataset.seq_items[idx], items.astype(onp.int32),
               *masks)


def _as_mx(array):
    """A batch's NumPy array as an MXNet array, sharing its memory.

    ``np.array`` copies synchronously: it waits for MXNet's engine to run
    every operator queued before it, so the next batch could not be
    prepared while the current one trains. The batch's arrays are made for
    one step and never written again, and :func:`train_epoch` keeps at
    most ``IN_FLIGHT`` batches queued, so their memory stays bounded.
    """
    return mx.nd.from_numpy(onp.ascontiguousarray(array), zero_copy=True,
                            array_cls=np.ndarray)


#: batches queued in MXNet's engine at most while the next is prepared
IN_FLIGHT = 2


def train_epoch(net, dataset, trainer, *, batch_size, devices, rng, loss,
                num_negatives=None, progress=None, epoch=None,
                scorer=None):
    """One pass over ``dataset``; returns (mean loss per example, seconds).

    Each batch is split over ``devices``; every shard's sequence is encoded
    once and its targets and negatives scored together, ``(b, T + N)``
    (with the full softmax loss, every item is scored). ``scorer`` (from
    :func:`masked_scorer`) scores with dropout masks drawn with the batch.

    Raises
    ------
    FloatingPointError
        If a batch's loss is NaN or infinite, naming the epoch and batch.
    """
    loss_fn = LOSSES[loss] if isinstance(loss, str) else loss
    full = getattr(loss_fn, 'full_softmax', False)
    T = dataset.seq_tgt.shape[1]
    num_negatives = 0 if full else (num_negatives or T)
    masked = scorer is not None
    start, losses, count = time.perf_counter(), [], 0
    for arrays in _batches(dataset, batch_size=batch_size, rng=rng,
                           num_negatives=num_negatives,
                           net=net if masked else None):
        check_interrupted()               # a Ctrl-C dropped in a __del__
        shards = [gluon.utils.split_and_load(_as_mx(a), devices,
                                             even_split=False)
                  for a in arrays]
        with autograd.record():
            ls = []
            for u, s, it, *masks in zip(*shards):
                if full:                        # every item: (b, num_items)
                    scores = net.all_item_scores()(u, s, *masks)
                    ls.append(loss_fn(scores, it))
                    continue
                scores = (scorer(u, s, it, *masks) if masked
                          else net(u, s, it))               # (b, T + N)
                ls.append(loss_fn(scores[:, :T], scores[:, T:]))
        for part in ls:
            part.backward()
        n = len(arrays[0])
        trainer.step(n)
        losses.append(sum(part.sum().as_in_ctx(mx.cpu()) for part in ls))
        if len(losses) > IN_FLIGHT:          # bound the engine's queue
            losses[-IN_FLIGHT - 1].wait_to_read()
        count += n
        if progress is not None:
            progress.update(n)
    per_batch = np.stack(losses).asnumpy()     # one sync, at the end
    bad = onp.flatnonzero(~onp.isfinite(per_batch))
    if len(bad):
        raise FloatingPointError(
            f'epoch {epoch}, batch {bad[0] + 1}: the loss is '
            f'{per_batch[bad[0]]}; training stopped (try a smaller --lr)')
    return float(per_batch.sum()) / count, time.perf_counter() - start


def _ids_per_batch(dataset, *, loss, batch_size, num_negatives):
    """Row ids a batch holds per input (``None``: every item's row has a
    gradient, with the full softmax)."""
    L, T = dataset.seq_items.shape[1], dataset.seq_tgt.shape[1]
    loss_fn = LOSSES[loss] if isinstance(loss, str) else loss
    full = getattr(loss_fn, 'full_softmax', False)
    return {'users': batch_size, 'seqs': batch_size * L,
            'items': None if full else batch_size * (T + (num_negatives or T))}


def fit(net, dataset, trainer, *, num_epochs, batch_size, devices, seed,
        loss, num_negatives=None, evaluate=None, on_epoch=None, quiet=False,
        start_epoch=1, lazy_update='off'):
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
    lazy_update : {'off', 'auto', 'on'}
        Which embedding tables are updated on their batch's rows only
        (:func:`lazy_tables`; needs ``make_trainer(lazy=True)``).

    Returns
    -------
    list of dict
        Per epoch run: ``epoch``, ``train_loss``, ``train_seconds``,
        ``examples_per_sec``, ``eval_seconds`` and the metrics of
        ``evaluate``.
    """
    history, scorer = [], masked_scorer(net)
    if isinstance(trainer.optimizer, LazyRows):
        trainer.optimizer.lazy_names = frozenset(lazy_tables(
            net, trainer, mode=lazy_update, ids_per_batch=_ids_per_batch(
                dataset, loss=loss, batch_size=batch_size,
                num_negatives=num_negatives)))
    for epoch in range(start_epoch, num_epochs + 1):
        bar = Progress(len(dataset), desc=f'epoch {epoch}/{num_epochs}',
                       quiet=quiet)
        try:
            loss_value, seconds = train_epoch(
                net, dataset, trainer, batch_size=batch_size,
                devices=devices, rng=seed_epoch(seed, epoch), loss=loss,
                num_negatives=num_negatives, progress=bar, epoch=epoch,
                scorer=scorer)
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
        check_interrupted()
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
