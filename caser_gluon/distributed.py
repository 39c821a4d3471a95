"""Scaling the chapter's training out with MXNet's parameter server.

The chapter trains on "all available GPUs" of one machine: each batch is
split over the devices and ``gluon.Trainer`` sums the gradients with a
``kvstore`` (``device`` or ``local``); ``--devices cpu:2``, ``gpu:0,1`` or
``all`` in :mod:`caser_gluon.train` do that. This module adds several
*processes* (several machines, or several processes on one), with the
parameter server that MXNet ships (ps-lite, built into the pip wheel):

* a **scheduler** and ``S`` **servers** are plain ``import mxnet``
  programs: with ``DMLC_ROLE=server`` (or ``scheduler``) importing mxnet
  starts the server loop and blocks until the workers finish;
* ``N`` **workers** run ``caser-gluon train --kvstore dist_sync``
  (or ``dist_async``). Each one trains on its shard of the *users*
  (:func:`shard_dataset`, by ``kv.rank`` and ``kv.num_workers``) with a
  ``1 / N`` share of ``--batch-size``; the servers sum the workers'
  gradients and run the optimiser (``update_on_kvstore``), so under
  ``dist_sync`` every worker holds the same parameters after each step.
* Every worker evaluates on *all* users after each epoch (one matrix
  product; under ``dist_sync`` all ranks print the same numbers, a free
  consistency check). Only rank 0 writes the run folder (``config.json``,
  metrics, plot, ``caser.params``); every rank ``r`` adds its parameters as
  ``caser-rank{r}.params``.

:mod:`caser_gluon.launcher` (``caser-gluon train-dist``, ``make
train-dist``) starts these processes on 127.0.0.1.
"""
import copy
import os

import numpy as onp

from .runs import RunFolder
from .train import make_trainer

__all__ = [
    'DIST_KVSTORES',
    'DMLC_VARS',
    'DistWorker',
    'assign_users',
    'is_dist',
    'shard_dataset',
]

DIST_KVSTORES = ('dist_sync', 'dist_async')
DMLC_VARS = ('DMLC_ROLE', 'DMLC_PS_ROOT_URI', 'DMLC_PS_ROOT_PORT',
             'DMLC_NUM_SERVER', 'DMLC_NUM_WORKER')


def is_dist(kvstore):
    """Whether ``kvstore`` (a name) is a parameter-server kvstore."""
    return str(kvstore).startswith('dist')


# ---------------------------------------------------------------------------
# Sharding the training windows by users
# ---------------------------------------------------------------------------

def assign_users(counts, num_workers):
    """Give each user to a worker, balancing the workers' windows.

    Greedy "largest first": users in decreasing order of windows (ties by
    id) go to the worker with the fewest windows so far (ties: lowest
    rank). Deterministic, so every worker computes the same assignment.

    Parameters
    ----------
    counts : (num_users,) int
        Training windows of each user (``0`` for users without one).
    num_workers : int

    Returns
    -------
    (num_users,) int64
        The rank owning each user.
    """
    counts = onp.asarray(counts, dtype=onp.int64)
    owner = onp.zeros(len(counts), dtype=onp.int64)
    loads = onp.zeros(num_workers, dtype=onp.int64)
    for user in onp.argsort(-counts, kind='stable'):
        rank = int(onp.argmin(loads))
        owner[user] = rank
        loads[rank] += counts[user]
    return owner


def shard_dataset(dataset, *, rank, num_workers, batch_size, seed=0):
    """The training windows of this worker's users, in whole batches.

    Users are split with :func:`assign_users`. Every shard is then topped
    up with a few of its own windows, drawn again, to the same length, a
    multiple of ``batch_size``: all workers take the same number of steps
    of the same size per epoch, which ``dist_sync`` needs (each step waits
    for every worker's gradient) and ``update_on_kvstore`` needs (the
    servers' optimiser keeps the first step's ``1 / batch_size`` scale).

    Parameters
    ----------
    dataset : SeqDataset
    rank, num_workers : int
    batch_size : int
        This worker's examples per step.
    seed : int
        Seeds the choice of the repeated windows.

    Returns
    -------
    SeqDataset
        A shallow copy whose windows (``seq_users``, ``seq_items``,
        ``seq_tgt``) are this worker's; ``test_seq`` and ``seen`` still
        cover every user, so evaluation ranks all users. ``shard_users``
        lists the worker's users and ``num_repeated`` the windows drawn
        twice.
    """
    if not 0 <= rank < num_workers:
        raise ValueError(f'rank {rank} outside 0..{num_workers - 1}')
    counts = onp.bincount(dataset.seq_users, minlength=dataset.num_users)
    if (counts > 0).sum() < num_workers:
        raise ValueError(f'{num_workers} workers but only '
                         f'{int((counts > 0).sum())} users with windows')
    owner = assign_users(counts, num_workers)
    loads = onp.bincount(owner, weights=counts, minlength=num_workers)
    size = int(onp.ceil(loads.max() / batch_size)) * batch_size
    idx = onp.flatnonzero(owner[dataset.seq_users] == rank)
    rng = onp.random.default_rng([seed, rank])
    extra = size - len(idx)
    again = rng.choice(idx, extra, replace=extra > len(idx))
    idx = onp.concatenate([idx, onp.sort(again)])
    shard = copy.copy(dataset)
    shard.seq_users = dataset.seq_users[idx]
    shard.seq_items = dataset.seq_items[idx]
    shard.seq_tgt = dataset.seq_tgt[idx]
    shard.ns = len(idx)
    shard.shard_users = onp.flatnonzero(owner == rank)
    shard.num_repeated = extra
    return shard


# ---------------------------------------------------------------------------
# One worker of a distributed run
# ---------------------------------------------------------------------------

class DistWorker:
    """A worker process of a ``dist_sync`` or ``dist_async`` run.

    Parameters
    ----------
    kvstore : str
        ``dist_sync`` or ``dist_async``.
    batch_size : int
        ``--batch-size``, the examples of one step over all workers.
    num_devices : int
        Devices of this worker.

    Attributes
    ----------
    kv : mxnet.kvstore.KVStore
    rank, num_workers : int
    batch_size : int
        This worker's examples per step, ``batch_size // num_workers``.

    Raises
    ------
    ValueError
        When the ``DMLC_*`` variables are missing (the process was not
        started by :func:`launch` or an equivalent), or the batch is too
        small to share.
    """

    def __init__(self, kvstore, *, batch_size, num_devices=1):
        import mxnet as mx
        if kvstore not in DIST_KVSTORES:
            raise ValueError(f'--kvstore {kvstore}: expected one of '
                             f'{", ".join(DIST_KVSTORES)}')
        missing = [v for v in DMLC_VARS if not os.environ.get(v)]
        if missing:
            raise ValueError(
                f'--kvstore {kvstore} needs a scheduler and servers, found '
                f'through the DMLC_* variables ({", ".join(missing)} not '
                'set): start it with caser-gluon train-dist '
                '--workers N -- <train flags> (make train-dist)')
        if os.environ['DMLC_ROLE'] != 'worker':
            raise ValueError(f'DMLC_ROLE={os.environ["DMLC_ROLE"]}: only a '
                             'worker trains')
        self.kv = mx.kv.create(kvstore)
        self.rank, self.num_workers = self.kv.rank, self.kv.num_workers
        self.batch_size = batch_size // self.num_workers
        if self.batch_size < num_devices:
            raise ValueError(f'--batch-size {batch_size} over '
                             f'{self.num_workers} workers leaves '
                             f'{self.batch_size} examples per step for '
                             f'{num_devices} devices')

    def shard(self, dataset, *, seed=0):
        """This worker's users' windows (:func:`shard_dataset`)."""
        return shard_dataset(dataset, rank=self.rank,
                             num_workers=self.num_workers,
                             batch_size=self.batch_size, seed=seed)

    def make_trainer(self, net, *, lr, wd, optimizer):
        """A ``gluon.Trainer`` on the parameter server.

        The servers sum the workers' gradients, each already divided by
        the worker's batch (``trainer.step``), so the optimiser's
        ``rescale_grad`` is ``1 / num_workers``: the update is the mean
        over all the step's examples, as with one process.
        """
        return make_trainer(net, lr=lr, wd=wd, optimizer=optimizer,
                            kvstore=self.kv,
                            rescale_grad=1.0 / self.num_workers)

    def run_folder(self, path, *, overwrite=False):
        """The shared run folder: rank 0 owns it, others write no file."""
        if path is None:
            raise ValueError('--kvstore dist_*: give --out, the folder every'
                             ' worker shares (train-dist does)')
        return RunFolder(path, overwrite=overwrite, owner=self.rank == 0)

    def save_params(self, net, folder):
        """Save this rank's parameters as ``caser-rank{rank}.params``."""
        return folder.save_params(net, f'caser-rank{self.rank}.params')
