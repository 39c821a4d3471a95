"""The ``caser-gluon`` command: train, train-dist, experiments, recommend, data.

Not a section of the chapter: the command line around it. ``caser-gluon
train`` reads as a straight line, the chapter's order::

    config -> seed -> data -> model -> fit -> evaluate -> save

Every flag of ``train`` comes from :mod:`caser_gluon.config` (defaults and
help are written there once). ``python -m caser_gluon.train`` is
``caser-gluon train``; ``make train`` runs it with the chapter's recipe.
A user error (a bad flag, file or run folder) ends with one line naming
it and exit status 2; Ctrl-C with status 130.
"""
import argparse
import json
import pathlib
import sys
import warnings

import numpy as onp

from . import config as config_lib
from .data import read_ml100k
from .distributed import DistWorker, is_dist, run_launcher
from .distributed import add_flags as add_dist_flags
from .evaluate import evaluate_all, evaluate_ranking
from .experiments import add_flags as add_experiments_flags
from .prepare import load_data
from .recommend import add_flags as add_recommend_flags
from .runs import RunFolder
from .runtime import resolve_devices, set_seed
from .train import fit, fit_d2l, make_trainer
from .zoo import build_model

__all__ = ['build_parser', 'main', 'resolve_config', 'run_train']

#: flags that may differ from the saved run's with ``--resume``
RESUMABLE = ('epochs', 'devices', 'num_workers')
#: the metrics printed after each epoch (``metrics.json`` has them all)
PRINTED = ['epoch', 'train_loss', 'train_seconds', 'examples_per_sec',
           'hit_rate', 'auc', 'hr@10', 'ndcg@10']
#: the metrics of the final line
FINAL = ['hr@10', 'hit_rate', 'ndcg@10', 'auc']


class UsageError(ValueError):
    """A flag combination that would silently do something else."""


# ---------------------------------------------------------------------------
# The configuration of a run
# ---------------------------------------------------------------------------

def resolve_config(args):
    """The run's :class:`RunConfig`: defaults, saved run, given flags.

    With ``--resume RUN`` the saved configuration is the base; a given
    flag may only change ``RESUMABLE`` fields (``--epochs`` extends the
    run), any other given flag must agree with the saved value.
    """
    given = config_lib.given_flags(args)
    if not args.resume:
        config = config_lib.from_flat(given, source='flags')
    else:
        saved = config_lib.read_config_file(
            pathlib.Path(args.resume) / 'config.json')
        for name, value in given.items():
            if name not in RESUMABLE and value != saved[name]:
                raise UsageError(
                    f'--resume {args.resume}: --{name.replace("_", "-")} '
                    f'{value} differs from the run\'s {saved[name]}; only '
                    f'{", ".join("--" + n for n in RESUMABLE)} can change')
        config = config_lib.from_flat({**saved, **given})
    check_config(config)
    return config


def check_config(config):
    """Reject combinations that would silently do something else."""
    t, d = config.train, config.data
    if t.loop == 'd2l' and (t.loss != 'bpr' or t.num_negatives):
        raise UsageError('--loss and --num-negatives need --loop fast '
                         '(d2l.train_ranking uses d2l.BPRLoss)')
    if t.loss in ('bpr', 'hinge') and t.num_negatives not in (None,
                                                              d.targets):
        raise UsageError(f'--loss {t.loss} pairs each target with one '
                         f'negative: --num-negatives must equal --targets '
                         f'({d.targets})')
    if t.loop == 'd2l' and d.targets != 1:
        raise UsageError('--targets needs --loop fast')
    if d.ratings is None and (d.min_rating is not None or d.k_core):
        raise UsageError('--min-rating and --k-core need --ratings')
    if is_dist(t.kvstore) and t.loop != 'fast':
        raise UsageError(f'--kvstore {t.kvstore} needs --loop fast')


# ---------------------------------------------------------------------------
# caser-gluon train
# ---------------------------------------------------------------------------

def run_train(args):
    """Train and evaluate as ``args`` say; returns the run's history."""
    config = resolve_config(args)
    t = config.train
    devices = resolve_devices(t.devices)
    if t.batch_size < len(devices):
        raise UsageError(f'--batch-size {t.batch_size} is smaller than the '
                         f'number of devices ({len(devices)})')
    dist = (DistWorker(t.kvstore, batch_size=t.batch_size,
                       num_devices=len(devices)) if is_dist(t.kvstore)
            else None)
    set_seed(t.seed)
    folder = (dist.run_folder(args.out, overwrite=args.overwrite) if dist
              else RunFolder(args.resume or args.out, resume=bool(
                  args.resume), overwrite=args.overwrite))
    try:
        return _train_in(folder, config, devices, dist, args)
    finally:
        folder.close()


def _train_in(folder, config, devices, dist, args):
    """:func:`run_train` once the run folder is held."""
    chapter = load_data(config.data, L=config.model.L, seed=config.train.seed)
    _check_data(chapter, config)
    dataset = chapter['train_seq_data']
    if dist is not None:        # this worker's users, all users' test data
        dataset = dist.shard(dataset, seed=config.train.seed)
    net = build_model(config.model, num_users=chapter['num_users'],
                      num_items=chapter['num_items'], devices=devices,
                      hybridize=config.train.hybridize)
    t = config.train
    trainer = (dist.make_trainer(net, lr=t.lr, wd=t.wd, optimizer=t.optimizer)
               if dist else make_trainer(net, lr=t.lr, wd=t.wd,
                                         optimizer=t.optimizer,
                                         kvstore=t.kvstore))
    start = 1
    if args.resume:
        start = folder.load_checkpoint(net, trainer, devices=devices) + 1
        print(f'resuming {folder.dir} after epoch {start - 1}')
    saved = dict(config_lib.to_flat(config), out=str(folder.dir),
                 contexts=[str(d) for d in devices], data=chapter['data_info'],
                 dist_workers=dist.num_workers if dist else None)
    folder.write_config(saved)
    folder.save_arrays('recommend.npz', **_recommend_arrays(chapter))
    if not args.quiet:
        print('configuration: ' + json.dumps(saved))
    _fit(net, dataset, trainer, chapter=chapter, config=config,
         devices=devices, folder=folder, start=start, quiet=args.quiet,
         batch_size=dist.batch_size if dist else t.batch_size,
         checkpoints=dist is None)
    if dist is not None:        # caser-rank{r}.params, to compare ranks
        dist.save_params(net, folder)
    if folder.owner:
        folder.save_params(net)
    folder.plot(loss_name=config.train.loss)
    _print_final(folder)
    return folder.history


def _recommend_arrays(chapter):
    """What ``recommend`` needs, kept with the run whatever the data does.

    Each user's test sequence, training items (CSR) and, for a ratings
    file, the original ids of users and items.
    """
    seen = chapter['candidates']
    arrays = {'test_seq': chapter['train_seq_data'].test_seq,
              'num_items': onp.int64(chapter['num_items']),
              'seen_indptr': seen.indptr, 'seen_indices': seen.indices}
    for key, ids in (chapter['id_maps'] or {}).items():
        arrays[key] = ids
    return arrays


def _check_data(chapter, config):
    """Refuse data that cannot train the configured model."""
    longest = int(chapter['candidates'].counts().max())
    if config.model.L > longest:
        raise UsageError(f'--L {config.model.L} is longer than the longest '
                         f'training history ({longest} items): every window'
                         ' would be mostly padding; choose --L <= '
                         f'{longest}')


def _fit(net, dataset, trainer, *, chapter, config, devices, folder, start,
         quiet, batch_size, checkpoints):
    """Run the configured loop; each epoch is saved by the run folder."""
    t = config.train
    eval_args = (chapter['test_input'], dataset.test_seq,
                 chapter['candidates'], chapter['num_users'],
                 chapter['num_items'], devices)

    def report(record):
        folder.add(record)      # every metric goes to metrics.json
        if checkpoints:
            folder.save_checkpoint(net, trainer, epoch=record['epoch'])
        if not quiet:
            print(' '.join(f'{k} {record[k]:.4g}' if isinstance(
                record[k], float) else f'{k} {record[k]}'
                for k in PRINTED if k in record), flush=True)

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
                           on_epoch=report)
        return fit(net, dataset, trainer, num_epochs=t.epochs,
                   batch_size=batch_size,
                   devices=devices, seed=t.seed, loss=t.loss,
                   num_negatives=t.num_negatives, quiet=quiet,
                   evaluate=_evaluator(t.evaluator, eval_args),
                   on_epoch=report, start_epoch=start)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_interrupted(folder, checkpoints)) from None


def _evaluator(kind, eval_args):
    """``evaluate(net) -> dict`` of the fast loop."""
    def evaluate(net):
        if kind == 'all':
            return evaluate_all(net, *eval_args)
        from d2l import mxnet as d2l
        hit_rate, auc = d2l.evaluate_ranking(net, *eval_args)
        return {'hit_rate': float(hit_rate), 'auc': float(auc)}
    return evaluate


def _interrupted(folder, checkpoints):
    """What Ctrl-C leaves, in one line."""
    done = folder.history[-1]['epoch'] if folder.history else 0
    if checkpoints and done:
        return (f'interrupted after epoch {done}; its checkpoint is in '
                f'{folder.dir}: continue with --resume {folder.dir}')
    return (f'interrupted during epoch {done + 1}: no checkpoint was '
            f'written, nothing to resume (metrics so far: {folder.dir})')


def _print_final(folder):
    """The run's last line: its test metrics, readable by a script."""
    last = folder.history[-1]
    shown = ' '.join(f'{k} {last[k]:.4f}' for k in FINAL if k in last)
    print(f'final: epoch {last["epoch"]} {shown}; run folder {folder.dir}')
    fewest = last.get('min_candidates')
    if fewest is not None and fewest < 50:
        print(f'note: some users had fewer than 50 candidate items (fewest:'
              f' {fewest}); HR@50 counts every one of them as a hit',
              file=sys.stderr)


# ---------------------------------------------------------------------------
# The parser and the entry point
# ---------------------------------------------------------------------------

def _train_parser(sub):
    p = sub.add_parser('train', help="train the chapter's Caser",
                       description="Train the D2L chapter's Caser on "
                       'ML-100K or a ratings file.')
    config_lib.add_flags(p)
    run = p.add_argument_group('run folder')
    run.add_argument('--out', default=None,
                     help='run folder (default: a fresh runs/caser-<time>)')
    run.add_argument('--overwrite', action='store_true',
                     help='replace the run in --out if there is one')
    run.add_argument('--resume', default=None, metavar='RUN_DIR',
                     help='continue an interrupted run from its last '
                          'checkpoint, with its saved configuration')
    run.add_argument('--quiet', action='store_true',
                     help='no progress, no per-epoch lines')
    p.set_defaults(handler=run_train)


def _dist_parser(sub):
    p = sub.add_parser('train-dist', help='train with the parameter server '
                       'on this machine', description='A scheduler, servers '
                       'and workers on 127.0.0.1; flags after -- go to every '
                       'worker (caser-gluon train).')
    add_dist_flags(p)
    p.set_defaults(handler=run_launcher)


def _data_parser(sub):
    p = sub.add_parser('data', help='fetch ML-100K into the cache')
    p.add_argument('--data-dir', default=None, help='where u.data is')

    def handler(args):
        frame, n_users, n_items = read_ml100k(args.data_dir)
        print(f'ML-100K ready: {len(frame)} ratings, {n_users} users, '
              f'{n_items} items')
    p.set_defaults(handler=handler)


def build_parser():
    """``caser-gluon`` and its subcommands."""
    p = argparse.ArgumentParser(prog='caser-gluon', description=__doc__.split(
        '\n')[0])
    sub = p.add_subparsers(dest='command', required=True)
    _train_parser(sub)
    _dist_parser(sub)
    add_experiments_flags(sub.add_parser(
        'experiments', help="the chapter's exercises over seeds"))
    add_recommend_flags(sub.add_parser(
        'recommend', help='top items of a trained run'))
    _data_parser(sub)
    return p


def main(argv=None):
    """Entry point of ``caser-gluon`` (and ``python -m caser_gluon.train``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f'caser-gluon {args.command}'
    warnings.filterwarnings('ignore', message='.*not used by any computation')
    try:
        code = args.handler(args)
    except (ValueError, FloatingPointError, KeyError) as err:
        # DataError, RunError, UsageError, RecommendError are ValueErrors
        parser.exit(2, f'{prog}: error: {str(err).strip(chr(39))}\n')
    except KeyboardInterrupt as err:
        parser.exit(130, f'{prog}: {err or "interrupted"}\n')
    except (OSError, MemoryError) as err:
        parser.exit(1, f'{prog}: error: {type(err).__name__}: {err}\n')
    if isinstance(code, int):
        sys.exit(code)


if __name__ == '__main__':
    main()
