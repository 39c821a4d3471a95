"""Training the chapter's Caser with BPR loss on a list of devices.

This module implements the chapter's "Training the Model" section. Two
loops share the data, the model and the evaluator:

* ``--loop fast`` (default), :func:`fit`: the chapter's structure (split
  each batch over the devices with ``split_and_load``, forward every shard
  under ``autograd.record()``, backward, ``trainer.step(batch_size)``), with
  each sequence encoded once to score its positive and negative item
  together, negatives drawn for a whole batch with vectorised NumPy, a
  numerically stable BPR loss, and an honest loss and throughput.
* ``--loop d2l``, :func:`fit_d2l`: the chapter's own path, a ``DataLoader``
  over ``SeqDataset`` and ``d2l.train_ranking`` with ``d2l.BPRLoss``.

Run ``python -m caser_gluon.train --help`` for the flags; ``make train``
runs the chapter's recipe.
"""
import argparse
import csv
import json
import os
import pathlib
import random
import sys
import time

import mxnet as mx
import numpy as onp
from mxnet import autograd, gluon, np, npx

from . import data as data_lib
from .evaluate import evaluate_all, evaluate_ranking
from .model import Caser

__all__ = [
    'LOSSES',
    'RunLog',
    'bce_loss',
    'bpr_loss',
    'build_net',
    'build_parser',
    'fit',
    'fit_d2l',
    'hinge_loss',
    'load_chapter_data',
    'main',
    'make_trainer',
    'resolve_devices',
    'run',
    'seed_epoch',
    'set_seed',
    'train_epoch',
]

npx.set_np()


# ---------------------------------------------------------------------------
# Loss, devices, seeds
# ---------------------------------------------------------------------------

def bpr_loss(positive, negative):
    """Per-example BPR loss ``-log sigmoid(positive - negative)``.

    Written as ``softrelu(negative - positive)``, which is finite for any
    margin, where ``d2l.BPRLoss``'s ``log(sigmoid(x))`` gives ``inf`` once
    ``sigmoid`` underflows. Same values as ``d2l.BPRLoss`` (summed over the
    batch) wherever the latter is finite.

    Parameters
    ----------
    positive, negative : (batch_size, ...) float

    Returns
    -------
    Loss of the inputs' (broadcast) shape.
    """
    return npx.activation(negative - positive, act_type='softrelu')


def hinge_loss(positive, negative, margin=1.0):
    """Per-pair hinge loss ``max(0, margin - positive + negative)``.

    ``d2l.HingeLossbRec`` per pair (d2l sums it over the batch).
    """
    return npx.relu(margin - positive + negative)


def bce_loss(positive, negative):
    """The paper's binary cross-entropy, summed over targets and negatives.

    ``-log sigmoid(p)`` for each positive and ``-log(1 - sigmoid(n))`` for
    each negative, written with ``softrelu`` to stay finite.

    Parameters
    ----------
    positive : (batch_size, T) float
    negative : (batch_size, N) float

    Returns
    -------
    (batch_size,) float
    """
    return (npx.activation(-positive, act_type='softrelu').sum(axis=1)
            + npx.activation(negative, act_type='softrelu').sum(axis=1))


def _pairwise(loss):
    """Pair target ``t`` with negative ``t``; sum over the ``T`` pairs."""
    def per_example(positive, negative):
        return loss(positive, negative).sum(axis=1)
    per_example.__doc__ = f'{loss.__name__}, summed over the T pairs.'
    return per_example


#: ``--loss`` name -> per-example loss of (positive (b, T), negative (b, N))
LOSSES = {'bpr': _pairwise(bpr_loss), 'hinge': _pairwise(hinge_loss),
          'bce': bce_loss}


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
        if rest.isdigit() and int(rest) >= 1:
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
                     'cpu, cpu:N or gpu:I,J')


def set_seed(seed):
    """Seed Python, NumPy's global RNG and MXNet (all devices)."""
    random.seed(seed)
    onp.random.seed(seed)
    mx.random.seed(seed)


# ---------------------------------------------------------------------------
# Data, model, trainer
# ---------------------------------------------------------------------------

def load_chapter_data(*, L=5, data_dir=None, seed=None, targets=1,
                      ratings=None, min_rating=None, k_core=0):
    """ML-100K, the sequence-aware split and ``SeqDataset``, as the chapter.

    Parameters
    ----------
    L : int
    data_dir : path-like, optional
        Where ML-100K's ``u.data`` is (default: found or fetched).
    seed : int, optional
        Seed of ``SeqDataset``'s negative sampler.
    targets : int
        Next items per window (``T``).
    ratings : path-like, optional
        Any ``user item rating timestamp`` file instead of ML-100K (see
        ``data.load_ratings``), filtered by ``min_rating`` and ``k_core``.

    Returns
    -------
    dict
        ``train_seq_data`` (SeqDataset), ``test_input`` (each user's held-out
        items), ``candidates`` (training items), ``num_users``,
        ``num_items``, and ``data_info`` (the ratings file's checksum...).
    """
    info = {}
    if ratings is not None:
        df, num_users, num_items, info = data_lib.load_ratings(
            ratings, min_rating=min_rating, k_core=k_core)
        info = {k: v for k, v in info.items() if k not in ('user_ids',
                                                           'item_ids')}
    else:
        df, num_users, num_items = data_lib.read_ml100k(data_dir)
    train_df, test_df = data_lib.split_seq_aware(df, num_users, num_items)
    users, items, candidates = data_lib.load_implicit(
        train_df, num_users, num_items)
    _, _, test_input = data_lib.load_implicit(test_df, num_users, num_items)
    dataset = data_lib.SeqDataset(users, items, L, num_users, num_items,
                                  candidates, targets=targets, seed=seed)
    return {'train_seq_data': dataset, 'test_input': test_input,
            'candidates': candidates, 'num_users': num_users,
            'num_items': num_items, 'data_info': info}


def build_net(*, num_users, num_items, devices, num_factors=10, L=5, d=16,
              d_prime=4, drop_ratio=0.05, hybridize=True, **kwargs):
    """A ``Caser`` initialised as the chapter does (Normal(0.01))."""
    net = Caser(num_factors, num_users, num_items, L=L, d=d,
                d_prime=d_prime, drop_ratio=drop_ratio, **kwargs)
    net.initialize(ctx=devices, force_reinit=True,
                   init=mx.init.Normal(0.01))
    if hybridize:
        net.hybridize(static_alloc=True, static_shape=False)
    return net


def make_trainer(net, *, lr=0.04, wd=1e-5, optimizer='adam',
                 kvstore='device'):
    """``gluon.Trainer`` with the chapter's optimiser settings."""
    return gluon.Trainer(net.collect_params(), optimizer,
                         {'learning_rate': lr, 'wd': wd}, kvstore=kvstore)


# ---------------------------------------------------------------------------
# The project's loop
# ---------------------------------------------------------------------------

def _batches(dataset, *, batch_size, rng, num_negatives=None):
    """Shuffled mini-batches ``(users, seqs, items)`` as NumPy arrays.

    ``items`` is ``(batch_size, T + N)``: the ``T`` targets, then ``N``
    negatives (default ``N = T``) drawn for the whole batch at once by
    rejection sampling, never one of the user's training items.
    """
    num_negatives = num_negatives or dataset.seq_tgt.shape[1]
    order = rng.permutation(len(dataset))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        users = dataset.seq_users[idx]
        negatives = data_lib.sample_negatives(
            onp.repeat(users, num_negatives), dataset.seen, rng)
        items = onp.concatenate(
            [dataset.seq_tgt[idx], negatives.reshape(len(idx), -1)], axis=1)
        yield users, dataset.seq_items[idx], items.astype(onp.int32)


def train_epoch(net, dataset, trainer, *, batch_size, devices, rng,
                loss='bpr', num_negatives=None, progress=None, epoch=None):
    """One pass over ``dataset``; returns (mean loss per example, seconds).

    Each batch is split over ``devices``; every shard's sequence is encoded
    once and its targets and negatives scored together, ``(b, T + N)``.

    Raises
    ------
    FloatingPointError
        If a batch's loss is NaN or infinite, naming the epoch and batch.
    """
    loss_fn = LOSSES[loss] if isinstance(loss, str) else loss
    T = dataset.seq_tgt.shape[1]
    start, losses, count = time.perf_counter(), [], 0
    for users, seqs, items in _batches(dataset, batch_size=batch_size,
                                       rng=rng, num_negatives=num_negatives):
        shards = [gluon.utils.split_and_load(np.array(a), devices,
                                             even_split=False)
                  for a in (users, seqs, items)]
        with autograd.record():
            ls = []
            for u, s, it in zip(*shards):
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


def seed_epoch(seed, epoch):
    """The random streams of one epoch: ``(seed, epoch)`` fixes them.

    Seeds MXNet (dropout) and returns NumPy's generator for the batch order
    and the negatives. Seeding per epoch, not once per run, lets a resumed
    run draw exactly what an uninterrupted one would.
    """
    if seed is None:
        return onp.random.default_rng()
    mx.random.seed(seed * 10_007 + epoch)
    return onp.random.default_rng([seed, epoch])


def fit(net, dataset, trainer, *, num_epochs, batch_size, devices, seed=None,
        loss='bpr', num_negatives=None, evaluate=None, on_epoch=None,
        quiet=False, checkpoint_dir=None, start_epoch=1, history=None):
    """Train with :func:`train_epoch`, evaluating after each epoch.

    Parameters
    ----------
    net : Caser
    dataset : SeqDataset
    trainer : gluon.Trainer
    num_epochs, batch_size : int
    devices : list of mxnet.Context
    seed : int, optional
        With the epoch, seeds the batch order, negatives and dropout.
    loss : str or callable
        ``'bpr'`` (the chapter), ``'hinge'`` or ``'bce'``; see ``LOSSES``.
    num_negatives : int, optional
        Negatives per window (default: one per target).
    evaluate : callable, optional
        ``evaluate(net) -> dict`` of test metrics.
    on_epoch : callable, optional
        Called with each epoch's record (a dict).
    quiet : bool
        No progress bar.
    checkpoint_dir : path-like, optional
        Save a checkpoint there after every epoch.
    start_epoch : int
        First epoch to run (after a resumed checkpoint).
    history : list of dict, optional
        The records of the epochs before ``start_epoch``.

    Returns
    -------
    list of dict
        Per epoch: ``epoch``, ``train_loss``, ``train_seconds``,
        ``examples_per_sec``, and the metrics of ``evaluate``.
    """
    from tqdm.auto import tqdm

    from .checkpoint import save_checkpoint
    history = list(history or [])
    for epoch in range(start_epoch, num_epochs + 1):
        rng = seed_epoch(seed, epoch)
        bar = tqdm(total=len(dataset), desc=f'epoch {epoch}/{num_epochs}',
                   unit='ex', leave=False,
                   disable=quiet or not sys.stderr.isatty())
        try:
            loss_value, seconds = train_epoch(
                net, dataset, trainer, batch_size=batch_size,
                devices=devices, rng=rng, loss=loss,
                num_negatives=num_negatives, progress=bar, epoch=epoch)
        finally:
            bar.close()
        record = {'epoch': epoch, 'train_loss': loss_value,
                  'train_seconds': seconds,
                  'examples_per_sec': len(dataset) / seconds}
        if evaluate is not None:
            record.update(evaluate(net))
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        if checkpoint_dir is not None:
            save_checkpoint(checkpoint_dir, net, trainer, epoch=epoch,
                            history=history)
    return history


# ---------------------------------------------------------------------------
# The chapter's loop
# ---------------------------------------------------------------------------

def fit_d2l(net, dataset, trainer, *, num_epochs, batch_size, devices,
            test_input, candidates, evaluator=None, num_workers=0,
            on_epoch=None):
    """Train with ``d2l.train_ranking`` exactly as the chapter calls it.

    ``evaluator`` (default: this package's :func:`evaluate_ranking`; pass
    ``d2l.evaluate_ranking`` for the chapter's own) is wrapped only to
    record each epoch's hit rate and AUC; d2l prints its summary itself.

    Returns
    -------
    list of dict
        Per epoch: ``epoch``, ``hit_rate``, ``auc``.
    """
    from d2l import mxnet as d2l
    evaluator = evaluator or evaluate_ranking
    history = []

    def recording_evaluator(*args):
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


# ---------------------------------------------------------------------------
# The run folder
# ---------------------------------------------------------------------------

class RunLog:
    """A run folder: ``config.json``, ``metrics.json``/``.csv``, a plot.

    Metrics are written after every epoch, so an interrupted run keeps
    what it computed.
    """

    def __init__(self, out_dir, config, *, history=None):
        self.dir = pathlib.Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.history = list(history or [])
        (self.dir / 'config.json').write_text(json.dumps(config, indent=2)
                                              + '\n')

    def add(self, record):
        """Append one epoch's record and rewrite the metrics files."""
        self.history.append(record)
        (self.dir / 'metrics.json').write_text(
            json.dumps(self.history, indent=2) + '\n')
        keys = list(dict.fromkeys(k for r in self.history for k in r))
        with open(self.dir / 'metrics.csv', 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.history)

    def plot(self):
        """``metrics.png``: test hit rate and AUC (and train loss) per epoch."""
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        epochs = [r['epoch'] for r in self.history]
        has_loss = any('train_loss' in r for r in self.history)
        fig, axes = plt.subplots(1, 1 + has_loss, figsize=(4 + 4 * has_loss,
                                                            3.2))
        axes = onp.atleast_1d(axes)
        for key, label in [('hit_rate', 'test hit rate@50'),
                           ('auc', 'test AUC')]:
            if any(key in r for r in self.history):
                axes[0].plot(epochs, [r.get(key) for r in self.history],
                             marker='o', label=label)
        axes[0].set(xlabel='epoch', ylim=(0, 1))
        axes[0].legend()
        if has_loss:
            axes[1].plot(epochs, [r['train_loss'] for r in self.history],
                         marker='o', color='C2')
            axes[1].set(xlabel='epoch', ylabel='train BPR loss')
        fig.tight_layout()
        fig.savefig(self.dir / 'metrics.png', dpi=100)
        plt.close(fig)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def _positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f'must be > 0, got {text}')
        return value
    return parse


def _non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'must be >= 0, got {text}')
    return value


def build_parser():
    """The ``caser-gluon train`` flags, defaults from the chapter."""
    p = argparse.ArgumentParser(
        prog='python -m caser_gluon.train',
        description="Train the D2L chapter's Caser on ML-100K.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--epochs', type=_positive(int), default=8,
                   help='training epochs')
    p.add_argument('--lr', type=_positive(float), default=0.04,
                   help='learning rate')
    p.add_argument('--wd', type=float, default=1e-5, help='weight decay')
    p.add_argument('--optimizer', default='adam', help='gluon optimizer')
    p.add_argument('--batch-size', type=_positive(int), default=4096,
                   help='examples per batch (over all devices)')
    p.add_argument('--L', type=_positive(int), default=5,
                   help='length of the input sequence')
    p.add_argument('--num-factors', type=_positive(int), default=10,
                   help='embedding size k')
    p.add_argument('--d', type=_non_negative_int, default=16,
                   help='horizontal filters per height (0: none)')
    p.add_argument('--d-prime', type=_non_negative_int, default=4,
                   help='vertical filters (0: none)')
    p.add_argument('--drop-ratio', type=float, default=0.05,
                   help='dropout before the dense layer')
    p.add_argument('--devices', default='auto',
                   help='auto, all, cpu, cpu:N or gpu:I,J')
    p.add_argument('--kvstore', default='device',
                   choices=['device', 'local', 'dist_sync', 'dist_async'],
                   help='how gradients of several devices are aggregated; '
                        'dist_*: several processes with a parameter server '
                        '(start with python -m caser_gluon.distributed)')
    p.add_argument('--loop', default='fast', choices=['fast', 'd2l'],
                   help="fast: this package's loop; d2l: d2l.train_ranking")
    p.add_argument('--evaluator', default='all', choices=['all', 'd2l'],
                   help='all: rank every item; d2l: d2l.evaluate_ranking '
                        '(ranks item ids below num_users only, slow)')
    p.add_argument('--num-workers', type=_non_negative_int, default=0,
                   help='DataLoader workers of the d2l loop')
    p.add_argument('--no-hybridize', dest='hybridize', action='store_false',
                   help='run the model imperatively')
    p.add_argument('--seed', type=int, default=0,
                   help='fixes data order, negatives and initialisation')
    p.add_argument('--data-dir', default=None,
                   help='folder with u.data (default: fetched to the '
                        'cache, see README)')
    p.add_argument('--out', default=None,
                   help='run folder (default: runs/caser-<time>)')
    p.add_argument('--quiet', action='store_true',
                   help='no progress bar, no per-epoch lines')
    p.add_argument('--conv', default='dense', choices=['dense', 'conv2d'],
                   help="dense: convolutions as dense layers over windows "
                        "(fast); conv2d: the chapter's Conv2D layers")
    p.add_argument('--targets', type=_positive(int), default=1,
                   help='T, next items predicted per window (the paper)')
    p.add_argument('--loss', default='bpr', choices=sorted(LOSSES),
                   help='bpr (chapter), hinge (d2l.HingeLossbRec), bce '
                        '(paper); fast loop only')
    p.add_argument('--num-negatives', type=_positive(int), default=None,
                   help='negatives per window (default: one per target)')
    p.add_argument('--ratings', default=None,
                   help='any "user item rating timestamp" file (tab, comma '
                        'or ::) instead of ML-100K')
    p.add_argument('--min-rating', type=float, default=None,
                   help='with --ratings: keep ratings >= this')
    p.add_argument('--k-core', type=_non_negative_int, default=0,
                   help='with --ratings: keep users and items with >= k '
                        'interactions')
    p.add_argument('--resume', default=None, metavar='RUN_DIR',
                   help='continue an interrupted run from its last '
                        'checkpoint, with its saved configuration')
    return p


def _resumed_args(args):
    """The saved configuration of ``args.resume``, to continue that run."""
    run_dir = pathlib.Path(args.resume)
    path = run_dir / 'config.json'
    if not path.is_file():
        raise ValueError(f'--resume {run_dir}: no config.json there')
    saved = json.loads(path.read_text())
    merged = vars(build_parser().parse_args([]))
    merged.update({k: v for k, v in saved.items() if k in merged})
    merged.update(resume=str(run_dir), out=str(run_dir), quiet=args.quiet)
    if args.epochs != build_parser().get_default('epochs'):
        merged['epochs'] = args.epochs          # --epochs extends the run
    return argparse.Namespace(**merged)


def _check_args(args):
    """Reject flag combinations that would silently do something else."""
    if args.loop == 'd2l' and (args.loss != 'bpr' or args.num_negatives):
        raise ValueError('--loss and --num-negatives need --loop fast '
                         '(d2l.train_ranking uses d2l.BPRLoss)')
    pairwise = args.loss in ('bpr', 'hinge')
    if pairwise and args.num_negatives not in (None, args.targets):
        raise ValueError(f'--loss {args.loss} pairs each target with one '
                         f'negative: --num-negatives must equal --targets '
                         f'({args.targets})')
    if args.ratings is None and (args.min_rating is not None or args.k_core):
        raise ValueError('--min-rating and --k-core need --ratings')
    if args.resume and args.kvstore.startswith('dist'):
        raise ValueError('--resume is not supported with --kvstore dist_*')


#: the metrics printed after each epoch (``metrics.json`` has them all)
PRINTED = ['epoch', 'train_loss', 'train_seconds', 'examples_per_sec',
           'hit_rate', 'auc', 'hr@10', 'ndcg@10']


def run(args):
    """Train and evaluate as ``args`` say; returns the run's history."""
    if args.resume:
        args = _resumed_args(args)
    _check_args(args)
    devices = resolve_devices(args.devices)
    if args.batch_size < len(devices):
        raise ValueError(f'--batch-size {args.batch_size} is smaller than '
                         f'the number of devices ({len(devices)})')
    from .distributed import worker_for
    dist = worker_for(args, num_devices=len(devices))   # None: one process
    set_seed(args.seed)
    out = args.out or os.path.join(
        'runs', time.strftime('caser-%Y%m%d-%H%M%S'))
    config = dict(vars(args), out=out, contexts=[str(d) for d in devices])
    chapter = load_chapter_data(
        L=args.L, data_dir=args.data_dir, seed=args.seed,
        targets=args.targets, ratings=args.ratings,
        min_rating=args.min_rating, k_core=args.k_core)
    config['data'] = chapter['data_info'] or {'name': 'ml-100k'}
    if not args.quiet:
        print('configuration: ' + json.dumps(config))
    dataset = chapter['train_seq_data']
    if dist is not None:        # this worker's users, all users' test data
        dataset = dist.shard(dataset, seed=args.seed)
    net = build_net(num_users=chapter['num_users'],
                    num_items=chapter['num_items'], devices=devices,
                    num_factors=args.num_factors, L=args.L, d=args.d,
                    d_prime=args.d_prime, drop_ratio=args.drop_ratio,
                    hybridize=args.hybridize, conv=args.conv)
    trainer = (dist.make_trainer if dist else make_trainer)(
        net, lr=args.lr, wd=args.wd, optimizer=args.optimizer,
        kvstore=args.kvstore)
    start_epoch, history = 1, []
    if args.resume:
        from .checkpoint import load_checkpoint
        done, history = load_checkpoint(args.resume, net, trainer,
                                        devices=devices)
        start_epoch = done + 1
        print(f'resuming {args.resume} after epoch {done}')
    log = dist.run_log(out, config) if dist else RunLog(
        out, config, history=history)
    evaluator = evaluate_ranking
    if args.evaluator == 'd2l':
        from d2l import mxnet as d2l
        evaluator = d2l.evaluate_ranking

    def report(record):
        log.add(record)             # every metric goes to metrics.json
        if not args.quiet:
            shown = {k: record[k] for k in PRINTED if k in record}
            print(' '.join(f'{k} {v:.4g}' if isinstance(v, float)
                           else f'{k} {v}' for k, v in shown.items()),
                  flush=True)

    eval_args = (chapter['test_input'], dataset.test_seq,
                 chapter['candidates'], chapter['num_users'],
                 chapter['num_items'], devices)
    if args.loop == 'fast':
        def evaluate(model):
            if evaluator is evaluate_ranking:   # every metric, all items
                return evaluate_all(model, *eval_args)
            hit_rate, auc = evaluator(model, *eval_args)
            return {'hit_rate': float(hit_rate), 'auc': float(auc)}
        try:
            fit(net, dataset, trainer, num_epochs=args.epochs,
                batch_size=dist.batch_size if dist else args.batch_size,
                devices=devices, seed=args.seed, loss=args.loss,
                num_negatives=args.num_negatives, evaluate=evaluate,
                on_epoch=report, quiet=args.quiet,
                checkpoint_dir=None if dist else log.dir,
                start_epoch=start_epoch, history=history)
        except KeyboardInterrupt:
            done = log.history[-1]['epoch'] if log.history else 0
            raise KeyboardInterrupt(
                f'interrupted after epoch {done}; its checkpoint is in '
                f'{log.dir}: continue with --resume {log.dir}') from None
    else:
        fit_d2l(net, dataset, trainer, num_epochs=args.epochs,
                batch_size=args.batch_size, devices=devices,
                test_input=chapter['test_input'],
                candidates=chapter['candidates'], evaluator=evaluator,
                num_workers=args.num_workers, on_epoch=report)
    if dist is not None:        # caser-rank{r}.params, to compare ranks
        dist.save_params(net, log.dir)
    if dist is None or dist.rank == 0:
        net.save_parameters(str(log.dir / 'caser.params'))
    log.plot()
    last = log.history[-1]
    print(f"final: test hit rate@50 {last['hit_rate']:.3f}, "
          f"test AUC {last['auc']:.3f}; run folder {log.dir}")
    return log.history


def main(argv=None):
    """Entry point of ``python -m caser_gluon.train``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        run(args)
    except (ValueError, FloatingPointError) as err:
        # DataError and CheckpointError are ValueErrors
        parser.exit(2, f'{parser.prog}: error: {err}\n')
    except KeyboardInterrupt as err:
        parser.exit(130, f'{parser.prog}: {err or "interrupted"}\n')


if __name__ == '__main__':
    main()
