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
import pathlib
import sys
import warnings

from .fpu import enable_flush_to_zero

# Subnormal floats in embeddings and Adam's moments slow some CPUs down
# many times; MXNet's threads copy this setting when they start, so it
# comes before numpy and mxnet are imported (caser_gluon/fpu.py).
FLUSH_TO_ZERO = enable_flush_to_zero()

from mxnet.optimizer import Optimizer

from . import config as config_lib
from .data import read_ml100k
from .distributed import is_dist
from .experiments import add_flags as add_experiments_flags
from .launcher import add_flags as add_dist_flags
from .launcher import run_launcher
from .pipeline import run_training
from .recommend import add_flags as add_recommend_flags
from .runtime import catch_interrupts

__all__ = ['build_parser', 'main', 'resolve_config', 'run_train']

#: flags that may differ from the saved run's with ``--resume``
RESUMABLE = ('epochs', 'devices', 'num_workers')


class UsageError(ValueError):
    """A flag combination that would silently do something else."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage dump)."""

    def error(self, message):
        self.exit(2, f'{self.prog}: error: {message}\n')


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
    if given.get('train_file') or given.get('test_file'):
        given.setdefault('split', 'files')
    if not args.resume:
        config = config_lib.from_flat(config_lib.with_preset(given),
                                      source='flags')
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
    if t.optimizer.lower() not in Optimizer.opt_registry:
        raise UsageError(f'--optimizer {t.optimizer}: unknown (e.g. adam, '
                         'torchadam, sgd)')
    if t.loss == 'sampled' and not t.num_negatives:
        raise UsageError('--loss sampled needs --num-negatives N (the '
                         'sampled items each target competes with)')
    if t.loss == 'ce' and t.num_negatives:
        raise UsageError('--loss ce ranks every item: no --num-negatives')
    if t.patience and d.split in ('last', 'files') and not d.valid_file:
        raise UsageError('--patience needs a validation part: --split '
                         'last-valid, fraction, or --valid-file')
    if t.average_last:
        _check_averaging(t)
    if (d.split == 'files') != bool(d.train_file or d.test_file):
        raise UsageError('--split files goes with --train-file and '
                         '--test-file')
    if d.split == 'files' and (d.ratings or d.data_dir):
        raise UsageError('--split files reads --train-file and --test-file,'
                         ' not --ratings or --data-dir')


def _check_averaging(t):
    """``--average-last`` (given, or a preset's) with what it cannot join.
    """
    clash = ('--patience' if t.patience else '--loop d2l' if t.loop != 'fast'
             else '--evaluator d2l' if t.evaluator != 'all'
             else f'--epochs {t.epochs}' if t.average_last > t.epochs
             else None)
    if clash:
        raise UsageError(f'--average-last {t.average_last} (the mean of the '
                         f'last epochs) cannot go with {clash}; '
                         '--average-last 0 turns it off')


# ---------------------------------------------------------------------------
# caser-gluon train
# ---------------------------------------------------------------------------

def run_train(args):
    """``caser-gluon train``: :func:`~caser_gluon.pipeline.run_training`."""
    config = resolve_config(args)
    catch_interrupts()
    return run_training(config, out=args.out, overwrite=args.overwrite,
                        resume=args.resume, quiet=args.quiet)


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
    p = OneLineParser(prog='caser-gluon',
                      description=__doc__.split('\n')[0])
    sub = p.add_subparsers(dest='command', required=True,
                           parser_class=OneLineParser)
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
