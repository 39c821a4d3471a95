"""The local launcher of a parameter-server run (``caser-gluon train-dist``).

Starts a scheduler, ``S`` servers and ``N`` workers (see
:mod:`caser_gluon.distributed`) as processes on 127.0.0.1 with the
``DMLC_*`` variables, waits for the workers, and stops every process when
one fails, when the scheduler or a server dies (the workers would wait
for it forever), on ``--timeout`` or on Ctrl-C. Across machines, start the
same roles with the same variables by hand (or with MXNet's
``tools/launch.py``), with ``DMLC_PS_ROOT_URI`` the scheduler's address.
"""
import argparse
import math
import os
import signal
import socket
import subprocess
import sys
import time

from .distributed import DIST_KVSTORES
from .runs import fresh_name

__all__ = ['SERVER_GRACE', 'add_flags', 'free_port', 'launch',
           'run_launcher']

#: seconds workers may outlive a scheduler or server that exited with 0
SERVER_GRACE = 60.0
# A scheduler or server: importing mxnet with DMLC_ROLE set runs its loop.
SERVER_PROGRAM = 'import mxnet'



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


def launch(train_args=(), *, workers, servers, kvstore,
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
                    if a == '--kvstore'), DIST_KVSTORES[0])
    return launch(train_args, workers=args.workers, servers=args.servers,
                  kvstore=kvstore, port=args.port, timeout=args.timeout,
                  threads=args.threads)


if __name__ == '__main__':       # an entry point, not an import of the cli
    from .cli import main
    main(['train-dist', *sys.argv[1:]])
