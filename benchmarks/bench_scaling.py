"""Throughput of the chapter's training on 1 and 2 devices or processes.

Runs ``python -m caser_gluon.train`` (one process, ``--devices cpu`` or
``cpu:2``) and ``python -m caser_gluon.launcher`` (``dist_sync`` with 1
or 2 workers, ``dist_async`` with 2) for a few epochs each, and reads the
run folders: training examples per second of the fastest epoch after the
first (the first includes hybridisation and the kvstore's start; the best
epoch is the least disturbed by other jobs on a shared machine), test hit
rate and AUC after the last epoch, and the wall time of the whole
command. For the parameter server the rate is summed over workers
(each worker's shard has the same size, and ``dist_sync`` keeps them in
step). Writes ``benchmarks/SCALING.md``::

    python benchmarks/bench_scaling.py            # about 2 minutes
    python benchmarks/bench_scaling.py --epochs 3 --out /tmp/SCALING.md

:func:`bench_scaling` returns the rows, for ``benchmarks/bench.py``.
"""
import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

__all__ = ['CONFIGS', 'bench_scaling', 'main', 'run_config', 'to_markdown']

HERE = pathlib.Path(__file__).resolve().parent

# name, launcher flags (None: one process), train flags
CONFIGS = [
    ('1 process, 1 CPU context', None, ['--devices', 'cpu']),
    ('1 process, 2 CPU contexts (kvstore device)', None,
     ['--devices', 'cpu:2', '--kvstore', 'device']),
    ('dist_sync, 1 worker + 1 server', ['--workers', '1'],
     ['--devices', 'cpu']),
    ('dist_sync, 2 workers + 1 server', ['--workers', '2'],
     ['--devices', 'cpu']),
    ('dist_async, 2 workers + 1 server',
     ['--workers', '2', '--kvstore', 'dist_async'], ['--devices', 'cpu']),
]


def run_config(name, launcher, train_args, *, epochs=3, batch_size=4096,
               seed=0, timeout=600):
    """Train one configuration; returns its row (a dict).

    Parameters
    ----------
    name : str
    launcher : list of str or None
        Flags of ``python -m caser_gluon.launcher``; ``None`` runs one
        ``python -m caser_gluon.train`` process.
    train_args : list of str
        Flags of ``python -m caser_gluon.train``.
    epochs, batch_size, seed : int
    timeout : float
        Seconds before the run is stopped.

    Returns
    -------
    dict
        ``config``, ``workers``, ``examples_per_sec`` (best epoch after
        the first, all workers), ``hit_rate``, ``auc``, ``wall_seconds``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / 'run'
        flags = ['--epochs', str(epochs), '--batch-size', str(batch_size),
                 '--seed', str(seed), '--quiet', '--out', str(out),
                 *train_args]
        if launcher is None:
            cmd = [sys.executable, '-m', 'caser_gluon.train', *flags]
        else:
            cmd = [sys.executable, '-m', 'caser_gluon.launcher',
                   *launcher, '--timeout', str(timeout), '--', *flags]
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=timeout + 60, check=False)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f'{name}: exit code {done.returncode}\n'
                               f'{done.stderr[-3000:]}')
        history = json.loads((out / 'metrics.json').read_text())
        config = json.loads((out / 'config.json').read_text())
    workers = config.get('dist_workers', 1)
    rate = max(r['examples_per_sec'] for r in history[1:] or history)
    last = history[-1]
    return {'config': name, 'workers': workers,
            'examples_per_sec': rate * workers,
            'hit_rate': last['hit_rate'], 'auc': last['auc'],
            'wall_seconds': wall}


def bench_scaling(*, epochs=3, batch_size=4096, seed=0, configs=None,
                  quiet=False):
    """Run every configuration of :data:`CONFIGS`; returns the rows."""
    rows = []
    for name, launcher, train_args in configs or CONFIGS:
        row = run_config(name, launcher, train_args, epochs=epochs,
                         batch_size=batch_size, seed=seed)
        rows.append(row)
        if not quiet:
            print(f"{name}: {row['examples_per_sec']:,.0f} examples/s, "
                  f"HR@50 {row['hit_rate']:.3f}, AUC {row['auc']:.3f}, "
                  f"{row['wall_seconds']:.1f} s", flush=True)
    return rows


def to_markdown(rows, *, epochs, batch_size):
    """The table of ``rows`` with the machine it was measured on."""
    import mxnet as mx
    base = rows[0]['examples_per_sec']
    intro = (f'Measured by `python benchmarks/bench_scaling.py` on '
             f'{os.cpu_count()} CPU cores ({platform.machine()}), mxnet '
             f'{mx.__version__}, {epochs} epochs of the chapter\'s recipe '
             f'(batch {batch_size} over all devices and workers); '
             f'examples/s of the best epoch after the first, summed over '
             f'workers (each has an equal shard); metrics '
             f'after epoch {epochs}; wall time of the whole command '
             f'(start, data, training, evaluation).')
    header = ('| configuration | examples/s | vs 1 context | HR@50 | AUC '
              '| wall s |')
    lines = [intro, '', header,
             '| --- | ---: | ---: | ---: | ---: | ---: |']
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['examples_per_sec']:,.0f} | "
            f"{r['examples_per_sec'] / base:.2f}x | {r['hit_rate']:.3f} | "
            f"{r['auc']:.3f} | {r['wall_seconds']:.1f} |")
    return '\n'.join(lines) + '\n'


def main(argv=None):
    """Entry point: run the benchmark and write the markdown table."""
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--epochs', type=int, default=3,
                   help='epochs per configuration (the first is not '
                        'timed)')
    p.add_argument('--batch-size', type=int, default=4096,
                   help='examples per step over all devices and workers')
    p.add_argument('--seed', type=int, default=0, help='seed of every run')
    p.add_argument('--out', default=str(HERE / 'SCALING.md'),
                   help='markdown file to write (the table only is '
                        'replaced between the markers if they exist)')
    args = p.parse_args(argv)
    rows = bench_scaling(epochs=args.epochs, batch_size=args.batch_size,
                         seed=args.seed)
    table = to_markdown(rows, epochs=args.epochs,
                        batch_size=args.batch_size)
    out = pathlib.Path(args.out)
    begin, end = '<!-- table -->\n', '<!-- /table -->\n'
    text = out.read_text() if out.exists() else ''
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + begin + table + end + rest.split(end, 1)[1]
    else:
        text = '# Scaling out\n\n' + begin + table + end
    out.write_text(text)
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
