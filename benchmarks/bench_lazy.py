"""Benchmark: Adam's update of embedding tables, dense against lazy.

One optimizer step on tables of MovieLens-32M's sizes (the chapter's
``Caser(10)``: users x 10, items x 10 in, items x 20 out, items x 1 bias),
with the rows one batch of 4096 windows would touch holding a gradient:
MXNet's dense ``adam_update`` (every row, every step) against the lazy one
that :class:`caser_gluon.optimizers.LazyRows` runs (the gradient cast to
row-sparse on the engine, then ``adam_update(lazy_update=True)``).

Run ``python benchmarks/bench_lazy.py``; it prints one line per table
(milliseconds, median of 30 steps) and the machine's load.
"""
import os
import statistics
import time

import mxnet as mx
import numpy as onp

__all__ = ['TABLES', 'main', 'time_update']

#: name -> (rows, width, row ids a batch of 4096 windows looks up)
TABLES = {'P (users)': (200_948, 10, 4096),
          'Q (items, input)': (87_586, 10, 4096 * 5),
          "Q' (items, output)": (87_585, 20, 4096 * 2),
          'b (items, bias)': (87_585, 1, 4096 * 2)}


def time_update(rows, width, ids, *, lazy, steps=30, seed=0):
    """Median milliseconds of one Adam step on a (rows, width) table."""
    rng = onp.random.default_rng(seed)
    weight = mx.nd.random.normal(shape=(rows, width))
    mean, var = mx.nd.zeros((rows, width)), mx.nd.zeros((rows, width))
    grad = mx.nd.zeros((rows, width))
    touched = onp.unique(rng.integers(0, rows, ids))
    grad[mx.nd.array(touched)] = 0.1
    times = []
    for _ in range(steps + 1):
        mx.nd.waitall()
        start = time.perf_counter()
        g = grad.tostype('row_sparse') if lazy else grad
        mx.nd.adam_update(weight, g, mean, var, out=weight, lr=1e-3,
                          wd=1e-5, lazy_update=lazy)
        mx.nd.waitall()
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times[1:]), len(touched)


def main():
    """Print the table of dense and lazy update times."""
    print('| table | rows x width | rows touched | dense ms | lazy ms |')
    print('| --- | --- | ---: | ---: | ---: |')
    total = [0.0, 0.0]
    for name, (rows, width, ids) in TABLES.items():
        dense, touched = time_update(rows, width, ids, lazy=False)
        lazy, _ = time_update(rows, width, ids, lazy=True)
        total[0] += dense
        total[1] += lazy
        print(f'| {name} | {rows:,} x {width} | {touched:,} | {dense:.2f} '
              f'| {lazy:.2f} |')
    print(f'| all four | | | {total[0]:.2f} | {total[1]:.2f} |')
    print(f'\nLoad average (1, 5, 15 min): {os.getloadavg()}; '
          f'OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS", "unset")}')


if __name__ == '__main__':
    main()
