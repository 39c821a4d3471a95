"""Benchmark: the full evaluation, MXNet's scores against NumPy's.

Times, in one run and interleaved, :func:`caser_gluon.evaluate.
evaluate_blocks` over every user and every item (every metric, blocks of
256 MB of scores) with two scorers of the same model:

* ``mxnet``: the previous scorer, ``net.score_all`` (MXNet's ``np.dot``,
  the bias added, ``asnumpy``) for each block of users (today's on a GPU:
  ``model_scorer(on_host=False)``);
* ``numpy``: today's on a CPU, :func:`caser_gluon.evaluate.model_scorer`,
  the users' vectors from MXNet and one NumPy (BLAS) product against the
  item table with the bias as its last column.

Both must give the same metrics (the largest difference is printed). It
also times the rank counting of one block alone
(``caser_gluon.metrics._before``: ``>`` and ``==`` against each user's
target score) over the whole block at once, as before, and
``BEFORE_ROWS`` rows at a time, as today. The
model is the chapter's ``Caser(10)`` with its initialisation, untrained:
the cost does not depend on the parameters' values. The data is a
MovieLens-shaped synthetic file (``benchmarks/synth_movielens.py``,
cached outside the repository)::

    python benchmarks/bench_eval.py --shape ml-10m --repeat 3

writes ``benchmarks/EVAL.md`` (``--out``).
"""
import argparse
import os
import pathlib
import statistics
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import mxnet as mx
import numpy as onp
import synth_movielens as synth
from bench_step import machine

from caser_gluon import metrics as metrics_lib
from caser_gluon.config import DataConfig, ModelConfig
from caser_gluon.evaluate import evaluate_blocks, model_scorer
from caser_gluon.prepare import load_data
from caser_gluon.zoo import build_model


def time_both(chapter, net, *, repeat):
    """Interleaved timings (seconds) and metrics of both scorers."""
    device, seq = mx.cpu(), chapter['test_seq']
    sets = {'relevant': chapter['test_input'],
            'excluded': chapter['test_excluded']}
    makers = {'mxnet': False, 'numpy': True}       # model_scorer(on_host)
    seconds = {name: [] for name in makers}
    metrics = {}
    for _ in range(repeat):
        for name, on_host in makers.items():
            start = time.perf_counter()
            score = model_scorer(net, seq, device=device, on_host=on_host)
            metrics[name] = evaluate_blocks(score, **sets)
            seconds[name].append(time.perf_counter() - start)
    return seconds, metrics


def time_ranks(*, num_items, repeat):
    """Seconds of ``_before`` on one 256 MB block of random scores, whole
    block (``BEFORE_ROWS`` = every row) against chunks, interleaved."""
    rng = onp.random.default_rng(0)
    rows = (256 << 20) // (4 * num_items)
    scores = rng.standard_normal((rows, num_items)).astype(onp.float32)
    targets = rng.integers(0, num_items, rows)
    ts = scores[onp.arange(rows), targets]
    chunk = metrics_lib.BEFORE_ROWS
    seconds = {'whole block': [], f'{chunk} rows at a time': []}
    counts = []
    try:
        for _ in range(repeat):
            for name, size in zip(seconds, (rows, chunk)):
                metrics_lib.BEFORE_ROWS = size
                start = time.perf_counter()
                counts.append(metrics_lib._before(scores, ts, targets))
                seconds[name].append(time.perf_counter() - start)
    finally:
        metrics_lib.BEFORE_ROWS = chunk
    assert all((c == counts[0]).all() for c in counts)
    return rows, seconds


def report(args, chapter, seconds, metrics, load_before, ranks):
    """The markdown report."""
    old, new = (statistics.median(seconds[k]) for k in ('mxnet', 'numpy'))
    diff = max(abs(metrics['mxnet'][k] - metrics['numpy'][k])
               for k in metrics['numpy'])
    rows = '\n'.join(
        f'| {name} | {statistics.median(v):.2f} | '
        f'{", ".join(f"{s:.2f}" for s in v)} |'
        for name, v in seconds.items())
    rank_rows = '\n'.join(
        f'| {name} | {statistics.median(v):.3f} | '
        f'{", ".join(f"{s:.3f}" for s in v)} |'
        for name, v in ranks[1].items())
    return f"""# The full evaluation: MXNet's scores against NumPy's

Written by `python benchmarks/bench_eval.py --shape {args.shape} --repeat \
{args.repeat}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.
Shape {args.shape}: {chapter['num_users']:,} users, \
{chapter['num_items']:,} items; every user against every item, every \
metric, blocks of 256 MB of scores; untrained `Caser(10)`.

Machine: {machine()} (load average before: {load_before}).

| scorer | median s | runs (interleaved) |
| --- | --- | --- |
{rows}

NumPy's scorer takes {new / old:.2f}x the time of MXNet's \
({old / new:.1f}x faster); largest difference between their metrics: \
{diff:.2g}.

Rank counting alone (`metrics._before`), one block of {ranks[0]:,} users \
x {chapter['num_items']:,} items of random scores, the same counts:

| counted | median s | runs (interleaved) |
| --- | --- | --- |
{rank_rows}
"""


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--shape', default='ml-10m', choices=list(synth.SHAPES))
    p.add_argument('--repeat', type=int, default=3)
    p.add_argument('--out', default=str(HERE / 'EVAL.md'))
    args = p.parse_args(argv)
    load_before = ', '.join(f'{x:.2f}' for x in os.getloadavg())
    path = synth.generate(args.shape, seed=0, quiet=False)
    chapter = load_data(DataConfig(ratings=str(path)), L=5, seed=0)
    net = build_model(ModelConfig(), num_users=chapter['num_users'],
                      num_items=chapter['num_items'], devices=[mx.cpu()])
    seconds, metrics = time_both(chapter, net, repeat=args.repeat)
    ranks = time_ranks(num_items=chapter['num_items'], repeat=args.repeat)
    text = report(args, chapter, seconds, metrics, load_before, ranks)
    pathlib.Path(args.out).write_text(text)
    print(text)


if __name__ == '__main__':
    main()
