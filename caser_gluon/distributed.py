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
  (or ``dist_async``; ``caser-gluon train`` does). Each one trains on its shard of the *users*
  (:func:`shard_dataset`, by ``kv.rank`` and ``kv.num_workers``) with a
  ``1 / N`` share of ``--batch-size``; the servers sum the workers'
  gradients and run the optimiser (``update_on_kvstore``), so under
  ``dist_sync`` every worker holds the same parameters after each step.
* Every worker evaluates on *all* users after each epoch (one matrix
  product; under ``dist_sync`` all ranks print the same numbers, a free
  consistency check). Only rank 0 writes the run folder (``config.json``,
  metrics, plot, ``caser.params``); every rank ``r`` adds its parameters as
  ``caser-rank{r}.params``.

:func:`launch` (``caser-gluon train-dist --workers 2 --servers 1 -- <train
flags>``, ``make train-dist``) starts these processes on
127.0.0.1 with the ``DMLC_*`` variables, waits, and stops them all if one
fails or the time runs out. Across machines, start the same roles with the
same variables by hand (or with MXNet's ``tools/launch.py``), with
``DMLC_PS_ROOT_URI`` the scheduler's address.
"""
import argparse
import copy
import math
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as onp

from .runs import RunFolder, fresh_name
from .train import make_trainer

__all__ = [
    'DIST_KVSTORES',
    'DistWorker',
    'add_flags',
    'assign_users',
    'free_port',
    'is_dist',
    'launch',
    'run_launcher',
    'shard_dataset',
]

DIST_KVSTORES = ('dist_sync', 'dist_async')
DMLC_VARS = ('DMLC_ROLE', 'DMLC_PS_ROOT_URI', 'DMLC_PS_ROOT_PORT',
             'DMLC_NUM_SERVER', 'DMLC_NUM_WORKER')
#: seconds workers may outlive a scheduler or server that exited with 0
SERVER_GRACE = 60.0
# A scheduler or server: importing mxnet with DMLC_ROLE set runs its loop.
SERVER_PROGRAM = 'import mxnet'


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


# ---------------------------------------------------------------------------
# The local launcher
# ---------------------------------------------------------------------------

def free_port(host='127.0.0.1'):
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _stop(procs, grace=5.0):
    """Terminate the process groups of ``procs`` (SIGTERM, then SIGKILL)."""
    alive = [p for p in procs if p.poll() is None]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in alive:
            try:
                os.killpg(p.pid, sig)      # each child leads its own group
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(p.poll() is None
                                                  for p in alive):
            time.sleep(0.05)
        alive = [p for p in alive if p.poll() is None]
        if not alive:
            return


def _train_argv(train_args, *, kvstore):
    """The workers' flags: a ``--kvstore dist_*`` and one shared ``--out``."""
    args = list(train_args)
    if not any(a == '--kvstore' or a.startswith('--kvstore=')
               for a in args):
        args += ['--kvstore', kvstore]
    if not any(a == '--out' or a.startswith('--out=') for a in args):
        args += ['--out', str(fresh_name('caser-dist'))]
    return args


def _roles(argv, *, workers, servers, threads, python, env):
    """``(role, command, environment)`` of every process to start."""
    if threads is None and 'OMP_NUM_THREADS' not in os.environ:
        threads = max(1, (os.cpu_count() or 1) // (workers + servers))
    worker_env = dict(env)
    if threads is not None:
        worker_env['OMP_NUM_THREADS'] = str(threads)
    server_env = dict(env, OMP_NUM_THREADS='1')
    server = [python, '-c', SERVER_PROGRAM]
    worker = [python, '-m', 'caser_gluon.cli', 'train', *argv]
    return ([('scheduler', server, server_env)]
            + [('server', server, server_env)] * servers
            + [('worker', worker, worker_env)] * workers)


def _wait(procs, *, deadline, timeout):
    """Wait for the workers; 0, or the code that ends the run.

    A worker that fails, a scheduler or server that fails while workers
    still run (the workers would wait for it forever) or left cleanly
    ``SERVER_GRACE`` seconds before them, or the timeout end the run with
    a message naming the process.
    """
    workers = [p for role, p in procs if role == 'worker']
    quiet_since = None      # when a scheduler or server left with code 0
    while True:
        codes = [p.poll() for p in workers]
        failed = [c for c in codes if c not in (None, 0)]
        if failed:
            return _fail(f'a worker exited with code {failed[0]}; '
                         'stopping the others', failed[0])
        if all(c == 0 for c in codes):
            return 0
        for role, p in procs:
            code = p.poll() if role != 'worker' else None
            if code:
                return _fail(f'the {role} (pid {p.pid}) exited with code '
                             f'{code} while workers were running; stopping '
                             'every process', 1)
            if code == 0 and quiet_since is None:
                quiet_since = time.monotonic()
        # ps-lite's scheduler and servers leave with 0 once every worker
        # has finalised, a little before the workers exit; workers still
        # running long after that would wait forever
        if quiet_since is not None and time.monotonic() - quiet_since > \
                SERVER_GRACE:
            return _fail(f'the scheduler or a server left {SERVER_GRACE} s '
                         'ago and workers still run; stopping every process',
                         1)
        if deadline is not None and time.monotonic() > deadline:
            return _fail(f'timeout after {timeout} s; stopping every '
                         'process', 124)
        time.sleep(0.1)


def _fail(message, code):
    print(f'caser-gluon train-dist: {message}', file=sys.stderr)
    return code


def launch(train_args=(), *, workers=2, servers=1, kvstore='dist_sync',
           port=None, timeout=None, threads=None, python=sys.executable):
    """Run a scheduler, servers and workers as local processes; wait.

    Parameters
    ----------
    train_args : sequence of str
        Flags of ``caser-gluon train`` for every worker. A ``--kvstore``
        (default ``kvstore``) and an ``--out`` folder (default a fresh
        ``runs/caser-dist-<time>``) are added unless given.
    workers, servers : int
    kvstore : str
        ``dist_sync`` or ``dist_async``.
    port : int, optional
        The scheduler's port on 127.0.0.1 (default: a free one).
    timeout : float, optional
        Seconds before everything is stopped (default: none).
    threads : int, optional
        ``OMP_NUM_THREADS`` of each worker (default: the CPUs divided by
        the workers and servers, at least 1, unless ``OMP_NUM_THREADS`` is
        set). The scheduler and servers get 1. Oversubscribed OpenMP
        threads spin and slow a worker down several times.
    python : str
        The interpreter of every process.

    Returns
    -------
    int
        0 when every worker succeeded; else the first failing worker's
        exit code, 1 when the scheduler or a server died, 124 on timeout.
        All processes are stopped either way.
    """
    if workers < 1 or servers < 1:
        raise ValueError('need at least one worker and one server')
    if kvstore not in DIST_KVSTORES:
        raise ValueError(f'kvstore {kvstore!r}: expected one of '
                         f'{", ".join(DIST_KVSTORES)}')
    port = port or free_port()
    env = dict(os.environ, DMLC_PS_ROOT_URI='127.0.0.1',
               DMLC_PS_ROOT_PORT=str(port), DMLC_NUM_SERVER=str(servers),
               DMLC_NUM_WORKER=str(workers), DMLC_NODE_HOST='127.0.0.1')
    roles = _roles(_train_argv(train_args, kvstore=kvstore),
                   workers=workers, servers=servers, threads=threads,
                   python=python, env=env)
    procs = []
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        for role, cmd, role_env in roles:
            procs.append((role, subprocess.Popen(
                cmd, env=dict(role_env, DMLC_ROLE=role),
                start_new_session=True)))
        code = _wait(procs, deadline=deadline, timeout=timeout)
        if code == 0:   # the scheduler and servers leave after the workers
            for _, p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
        return code
    finally:
        _stop([p for _, p in procs])


def add_flags(p):
    """The launcher's flags (``caser-gluon train-dist``) on parser ``p``."""
    p.add_argument('--workers', type=_at_least_one, default=2,
                   help='worker processes (each trains on a shard of users)')
    p.add_argument('--servers', type=_at_least_one, default=1,
                   help='parameter server processes')
    p.add_argument('--port', type=_port, default=None,
                   help="scheduler's port on 127.0.0.1 (default: free one)")
    p.add_argument('--timeout', type=_seconds, default=None,
                   help='seconds before every process is stopped')
    p.add_argument('--threads', type=_at_least_one, default=None,
                   help='OMP_NUM_THREADS per worker (default: CPUs / '
                        '(workers + servers))')
    p.add_argument('train_args', nargs=argparse.REMAINDER,
                   help='-- then flags of caser-gluon train (a --kvstore '
                        'dist_async among them is used)')
    return p


def _at_least_one(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected an integer, got '
                                         f'{text!r}') from None
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be >= 1, got {text}')
    return value


def _port(text):
    value = _at_least_one(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f'not a port: {text}')
    return value


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f'expected a positive number of '
                                         f'seconds, got {text!r}')
    return value


def run_launcher(args):
    """Launch with parsed :func:`add_flags` arguments; returns the code."""
    # a SIGTERM (e.g. a batch system's) still runs launch's clean-up
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + 15))
    train_args = args.train_args
    if train_args[:1] == ['--']:
        train_args = train_args[1:]
    kvstore = next((train_args[i + 1] for i, a in enumerate(train_args[:-1])
                    if a == '--kvstore'), 'dist_sync')
    return launch(train_args, workers=args.workers, servers=args.servers,
                  kvstore=kvstore, port=args.port, timeout=args.timeout,
                  threads=args.threads)


if __name__ == '__main__':
    from .cli import main
    main(['train-dist', *sys.argv[1:]])
