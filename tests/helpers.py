"""Shared by the tests: a tiny ratings file, the CLI, Ctrl-C in an epoch,
brute-force metrics.

Not fixtures (``conftest.py`` holds those): plain functions the test
modules import (``tests/`` is on ``sys.path`` under pytest's default
import mode).
"""
import importlib.util
import math
import pathlib

import numpy as np

from caser_gluon import cli
from caser_gluon import train as train_lib

__all__ = ['SMALL', 'brute_force_metrics', 'error_line', 'interrupt_at',
           'run_cli', 'write_ratings']


#: a small model and batch for the tiny ratings file, quiet
SMALL = ['--batch-size', '32', '--num-factors', '8', '--quiet']


def interrupt_at(monkeypatch, epoch):
    """Make ``train_epoch`` raise KeyboardInterrupt during ``epoch``."""
    real = train_lib.train_epoch

    def train_epoch(*args, **kwargs):
        if kwargs['epoch'] == epoch:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(train_lib, 'train_epoch', train_epoch)


def write_ratings(path, *, num_users=24, num_items=30, per_user=10, seed=0,
                  sep='\t'):
    """Write a ``user item rating timestamp`` file with non-trivial ids.

    User ``u`` (0-based) is ``101 + 104 u`` in the file (101, 205, 309,
    ...), item ``i`` is ``5001 + 10 i``; each user rates ``per_user``
    distinct items at increasing timestamps, lines in a shuffled order.

    Returns
    -------
    dict
        ``user_ids`` (num_users,), ``item_ids`` (num_items,) (the file's
        ids, sorted as ``pd.factorize(sort=True)`` orders them) and
        ``history``: file user id -> file item ids, oldest first.
    """
    rng = np.random.default_rng(seed)
    user_ids = 101 + 104 * np.arange(num_users)
    item_ids = 5001 + 10 * np.arange(num_items)
    lines, history = [], {}
    for u in range(num_users):
        items = item_ids[rng.choice(num_items, per_user, replace=False)]
        history[int(user_ids[u])] = items.tolist()
        for t, item in enumerate(items):
            rating = int(rng.integers(1, 6))
            lines.append(sep.join(map(str, [user_ids[u], item, rating,
                                            880_000_000 + 1000 * u + t])))
    rng.shuffle(lines)
    path.write_text('\n'.join(lines) + '\n')
    return {'user_ids': user_ids, 'item_ids': item_ids, 'history': history}


def run_cli(argv):
    """Run ``caser-gluon ARGV`` in this process; its exit status."""
    try:
        cli.main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
        return 0 if code is None else code
    return 0


def error_line(err, command):
    """The one error line of ``caser-gluon COMMAND`` in stderr ``err``.

    Checks that there is no traceback, that exactly one line is an error,
    that it is the last line and that it starts with the command's name.
    """
    assert 'Traceback' not in err, err
    lines = err.strip().splitlines()
    errors = [line for line in lines if 'error:' in line]
    assert len(errors) == 1, err
    assert lines[-1] == errors[0], err
    assert errors[0].startswith(f'caser-gluon {command}: error: '), err
    return errors[0]


def brute_force_metrics(scores, relevant, excluded, ks):
    """Every metric, one user at a time: sort the candidates, walk the list.

    Candidates are sorted by (score descending, id ascending); a NaN score
    sorts last, and a relevant item scored NaN or -inf is never a hit.

    Parameters
    ----------
    scores : (num_users, num_items) float
    relevant, excluded : (num_users, num_items) bool
    ks : iterable of int

    Returns
    -------
    dict of str to (n,) float, for the ``n`` users with a relevant item.
    """
    out = {}
    for u in range(scores.shape[0]):
        rel = {i for i in range(scores.shape[1]) if relevant[u, i]}
        if not rel:
            continue
        cand = [i for i in range(scores.shape[1]) if not excluded[u, i]]

        def key(i, u=u):
            s = scores[u, i]
            return (math.inf if math.isnan(s) else -s, i)
        ranked = sorted(cand, key=key)
        positions = [r for r, i in enumerate(ranked) if i in rel
                     and not math.isnan(scores[u, i])
                     and scores[u, i] != -math.inf]
        row = {}
        for k in ks:
            hits = [r for r in positions if r < k]
            ideal = sum(1 / math.log2(r + 2)
                        for r in range(min(len(rel), k)))
            row[f'hr@{k}'] = float(bool(hits))
            row[f'ndcg@{k}'] = sum(1 / math.log2(r + 2)
                                   for r in hits) / ideal
            row[f'precision@{k}'] = len(hits) / k
            row[f'recall@{k}'] = len(hits) / len(rel)
        row['mrr'] = 1 / (positions[0] + 1) if positions else 0.0
        row['map'] = sum((j + 1) / (r + 1)
                         for j, r in enumerate(positions)) / len(rel)
        row['auc'] = ((len(ranked) - 1 - positions[0]) / max(len(ranked) - 1,
                                                              1)
                      if positions else 0.0)
        for name, value in row.items():
            out.setdefault(name, []).append(value)
    return {name: np.array(v) for name, v in out.items()}


def load_benchmark(name):
    """``benchmarks/<name>.py`` as a module (benchmarks is no package)."""
    path = pathlib.Path(__file__).resolve().parents[1] / 'benchmarks'
    spec = importlib.util.spec_from_file_location(name, path / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
