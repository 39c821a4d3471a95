"""One training run, start to end: what ``caser-gluon train`` does.

The chapter's sections in a straight line, as RecBole's ``run_recbole``::

    config -> seed -> data -> model -> fit -> evaluate -> save

:func:`run_training` takes a checked :class:`~caser_gluon.config.RunConfig`
and a run folder. Each epoch is reported to an :class:`EpochTracker`,
which writes the record and the checkpoint to the folder and, when the
data has a validation part, keeps the best epoch's parameters and stops
after ``patience`` epochs without progress. The run's result is the test
evaluation of the best epoch (the last one without validation), written
to ``result.json`` and printed as the last line.
"""
import json
import math
import sys

import mxnet as mx
import numpy as onp

from . import config as config_lib
from .averaging import ParameterAverage
from .distributed import DistWorker, is_dist
from .evaluate import evaluate_model, evaluate_ranking
from .prepare import load_data
from .runs import RunFolder, load_params, strict_json
from .runtime import resolve_devices, set_seed
from .train import fit, fit_d2l, make_trainer, wants_lazy
from .zoo import build_model

__all__ = ['EpochTracker', 'run_training']

#: the metrics printed after each epoch (``metrics.json`` has them all)
PRINTED = ['epoch', 'train_loss', 'train_seconds', 'examples_per_sec',
           'hit_rate', 'auc', 'hr@10', 'ndcg@10', 'valid_ndcg@10']
#: the metrics of the final line; ``MULTI`` too for multi-item test sets
FINAL = ['hr@10', 'hit_rate', 'ndcg@10', 'auc']
MULTI = ['precision@1', 'precision@5', 'precision@10', 'recall@1',
         'recall@5', 'recall@10', 'map']
#: the validation metric that picks the best epoch
VALID_METRIC = 'valid_ndcg@10'


def run_training(config, *, out=None, overwrite=False, resume=None,
                 quiet=False):
    """Train and evaluate as ``config`` says, in a run folder.

    Parameters
    ----------
    config : RunConfig
    out : path-like, optional
        The run folder (default: a fresh ``runs/caser-<time>``).
    overwrite : bool
        Replace a run already in ``out``.
    resume : path-like, optional
        A run folder to continue from its last checkpoint.
    quiet : bool

    Returns
    -------
    dict
        The run's result (test metrics of the chosen epoch).
    """
    t = config.train
    devices = resolve_devices(t.devices)
    if t.batch_size < len(devices):
        raise ValueError(f'--batch-size {t.batch_size} is smaller than the '
                         f'number of devices ({len(devices)})')
    dist = (DistWorker(t.kvstore, batch_size=t.batch_size,
                       num_devices=len(devices)) if is_dist(t.kvstore)
            else None)
    set_seed(t.seed)
    folder = (dist.run_folder(out, overwrite=overwrite) if dist else
              RunFolder(resume or out, resume=bool(resume),
                        overwrite=overwrite))
    try:
        return _run_in(folder, config, devices=devices, dist=dist,
                       resume=bool(resume), quiet=quiet)
    finally:
        folder.close()


def _run_in(folder, config, *, devices, dist, resume, quiet):
    """:func:`run_training` once the run folder is held."""
    t = config.train
    chapter = load_data(config.data, L=config.model.L, seed=t.seed)
    _check_data(chapter, config)
    dataset = chapter['train_seq_data']
    if dist is not None:        # this worker's users, all users' test data
        dataset = dist.shard(dataset, seed=t.seed)
    net = build_model(config.model, num_users=chapter['num_users'],
                      num_items=chapter['num_items'], devices=devices,
                      hybridize=t.hybridize)
    trainer = (dist.make_trainer(net, lr=t.lr, wd=t.wd, optimizer=t.optimizer)
               if dist else make_trainer(net, lr=t.lr, wd=t.wd,
                                         optimizer=t.optimizer,
                                         kvstore=t.kvstore,
                                         lazy=wants_lazy(t)))
    start = 1
    average = ParameterAverage.last(t.average_last, num_epochs=t.epochs)
    if resume:
        start = folder.load_checkpoint(net, trainer, devices=devices,
                                       average=average) + 1
        print(f'resuming {folder.dir} after epoch {start - 1}')
    saved = dict(config_lib.to_flat(config), out=str(folder.dir),
                 contexts=[str(d) for d in devices], data=chapter['data_info'],
                 dist_workers=dist.num_workers if dist else None,
                 conv_used=getattr(net, 'conv', None))   # 'auto' resolved
    folder.write_config(saved)
    folder.save_arrays('recommend.npz', **_recommend_arrays(chapter))
    if not quiet:
        print('configuration: ' + json.dumps(saved))
    tracker = EpochTracker(folder, net, trainer, patience=t.patience,
                           validating=chapter['valid_input'] is not None,
                           checkpoints=dist is None, quiet=quiet,
                           average=average)
    _fit(net, dataset, trainer, chapter=chapter, config=config,
         devices=devices, tracker=tracker, start=start, quiet=quiet,
         batch_size=dist.batch_size if dist else t.batch_size)
    if dist is not None:        # caser-rank{r}.params, to compare ranks
        dist.save_params(net, folder)
    result = _result(net, chapter, tracker, devices=devices,
                     loop=t.loop, owner=folder.owner)
    folder.plot(loss_name=t.loss)
    _print_final(result, folder)
    return result


def _recommend_arrays(chapter):
    """What ``recommend`` needs, kept with the run whatever the data does.

    Each user's last ``L`` items, training items (CSR) and, for a ratings
    file, the original ids of users and items.
    """
    seen = chapter['test_excluded']
    arrays = {'test_seq': chapter['test_seq'],
              'num_items': onp.int64(chapter['num_items']),
              'seen_indptr': seen.indptr, 'seen_indices': seen.indices}
    for key, ids in (chapter['id_maps'] or {}).items():
        arrays[key] = ids
    return arrays


def _check_data(chapter, config):
    """Refuse data that cannot train the configured model."""
    longest = int(chapter['candidates'].counts().max())
    if config.model.L > longest:
        raise ValueError(f'--L {config.model.L} is longer than the longest '
                         f'training history ({longest} items): every window'
                         f' would be mostly padding; choose --L <= {longest}')


class EpochTracker:
    """The ``on_epoch`` callback: save, print, keep the best, stop early.

    Parameters
    ----------
    folder : RunFolder
    net, trainer :
        What a checkpoint saves.
    patience : int or None
        Epochs without a better validation metric before stopping.
    validating : bool
        Records carry validation metrics (``valid_*``).
    checkpoints, quiet : bool
    average : ParameterAverage, optional
        Updated after each epoch (``--average-last``), kept by checkpoints.
    """

    def __init__(self, folder, net, trainer, *, patience, validating,
                 checkpoints, quiet, average=None):
        self.folder, self.net, self.trainer = folder, net, trainer
        self.average = average
        self.patience, self.validating = patience, validating
        self.checkpoints, self.quiet = checkpoints, quiet

    @property
    def best(self):
        """The record of the best epoch so far (the last without validation)."""
        history = self.folder.history
        if not self.validating or not history:
            return history[-1] if history else None
        return max(history, key=lambda r: (_finite(r.get(VALID_METRIC)),
                                           -r['epoch']))

    def __call__(self, record):
        self.folder.add(record)         # every metric goes to metrics.json
        if self.average is not None:
            self.average.update(self.net, record['epoch'])
        if self.validating and self.best is record and self.folder.owner:
            self.folder.save_params(self.net, 'best.params')
        if self.checkpoints:
            self.folder.save_checkpoint(self.net, self.trainer,
                                        epoch=record['epoch'],
                                        average=self.average)
        if not self.quiet:
            print(' '.join(f'{k} {record[k]:.4g}' if isinstance(
                record[k], float) else f'{k} {record[k]}'
                for k in PRINTED if k in record), flush=True)
        if self.patience and record['epoch'] - self.best['epoch'] >= \
                self.patience:
            if not self.quiet:
                print(f'early stop: no better {VALID_METRIC} since epoch '
                      f'{self.best["epoch"]}', flush=True)
            return 'stop'
        return None


def _finite(value):
    return value if isinstance(value, float) and math.isfinite(value) else \
        -math.inf


def _fit(net, dataset, trainer, *, chapter, config, devices, tracker, start,
         quiet, batch_size):
    """Run the configured loop; each epoch goes to ``tracker``."""
    t = config.train
    try:
        if t.loop == 'd2l':
            evaluator = evaluate_ranking
            if t.evaluator == 'd2l':
                from d2l import mxnet as d2l
                evaluator = d2l.evaluate_ranking
            return fit_d2l(net, dataset, trainer, num_epochs=t.epochs,
                           batch_size=t.batch_size, devices=devices,
                           test_input=chapter['test_input'],
                           candidates=chapter['candidates'],
                           evaluator=evaluator, num_workers=t.num_workers,
                           on_epoch=tracker)
        return fit(net, dataset, trainer, num_epochs=t.epochs,
                   batch_size=batch_size, devices=devices, seed=t.seed,
                   loss=t.loss, num_negatives=t.num_negatives, quiet=quiet,
                   evaluate=_epoch_evaluator(chapter, t.evaluator, devices),
                   on_epoch=tracker, start_epoch=start,
                   lazy_update=t.lazy_update)
    except KeyboardInterrupt:
        # let MXNet's engine finish the queued batches first: exiting with
        # them in flight can abort the process ("terminate called ...")
        mx.nd.waitall()
        raise KeyboardInterrupt(_interrupted(tracker)) from None


def _epoch_evaluator(chapter, kind, devices):
    """``evaluate(net) -> dict``: validation metrics, else test metrics."""
    def evaluate(net):
        if chapter['valid_input'] is not None:
            means = evaluate_model(net, test_seq=chapter['valid_seq'],
                                   relevant=chapter['valid_input'],
                                   excluded=chapter['candidates'],
                                   device=devices[0])
            return {f'valid_{k}': v for k, v in means.items()}
        if kind == 'all':
            return _test_metrics(net, chapter, devices)
        from d2l import mxnet as d2l
        hit_rate, auc = d2l.evaluate_ranking(
            net, chapter['test_input'], chapter['test_seq'],
            chapter['candidates'], chapter['num_users'],
            chapter['num_items'], devices)
        return {'hit_rate': float(hit_rate), 'auc': float(auc)}
    return evaluate


def _test_metrics(net, chapter, devices):
    return evaluate_model(net, test_seq=chapter['test_seq'],
                          relevant=chapter['test_input'],
                          excluded=chapter['test_excluded'],
                          device=devices[0])


def _result(net, chapter, tracker, *, devices, loop, owner):
    """The run's result: the chosen epoch's test metrics (or those of the
    averaged parameters, ``--average-last``), saved."""
    folder, best, extra = tracker.folder, tracker.best, {}
    if tracker.average is not None:     # the mean of the last epochs
        best, extra = folder.history[-1], {
            'averaged_epochs': tracker.average.count}
        tracker.average.copy_to(net)
        test = _test_metrics(net, chapter, devices)
        if tracker.validating:
            test.update(_epoch_evaluator(chapter, 'all', devices)(net))
    elif tracker.validating:
        load_params(net, folder.dir / 'best.params', device=devices)
        test = _test_metrics(net, chapter, devices)
    elif loop == 'd2l':         # d2l's evaluation: hit rate and AUC only
        test = _test_metrics(net, chapter, devices)
    else:
        test = {k: v for k, v in best.items()
                if not k.startswith(('train_', 'examples', 'eval_s'))}
    result = dict(test, epoch=best['epoch'], **extra,
                  multi_item=bool(chapter['test_input'].counts().max() > 1))
    if owner:
        folder.save_params(net)
        (folder.dir / 'result.json').write_text(strict_json(result))
    return result


def _interrupted(tracker):
    """What Ctrl-C leaves, in one line."""
    folder = tracker.folder
    done = folder.history[-1]['epoch'] if folder.history else 0
    if tracker.checkpoints and done:
        return (f'interrupted after epoch {done}; its checkpoint is in '
                f'{folder.dir}: continue with --resume {folder.dir}')
    return (f'interrupted during epoch {done + 1}: no checkpoint was '
            f'written, nothing to resume (metrics so far: {folder.dir})')


def _print_final(result, folder):
    """The run's last line: its test metrics, readable by a script."""
    keys = FINAL + (MULTI if result['multi_item'] else [])
    shown = ' '.join(f'{k} {result[k]:.4f}' for k in keys if k in result)
    print(f'final: epoch {result["epoch"]} {shown}; run folder {folder.dir}')
    fewest = result.get('min_candidates')
    if fewest is not None and fewest < 50:
        print(f'note: some users had fewer than 50 candidate items (fewest:'
              f' {fewest}); HR@50 counts every one of them as a hit',
              file=sys.stderr)
