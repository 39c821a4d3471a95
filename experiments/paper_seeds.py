"""How far apart are the `paper` preset and the authors' code? (issue 14)

Reads the runs of both and compares their HR@50 over seeds::

    python experiments/paper_seeds.py --runs 'runs/paper-s*' \
        --authors /tmp/peers-harness/results/authors.jsonl

* ``--runs``: run folders of ``caser-gluon train --preset paper --seed S
  --out runs/paper-sS`` (their ``metrics.json``: HR@50 after every epoch);
* ``--authors``: the JSON lines of the peers' harness
  (``../shared/peers/run_caser_pytorch.py --protocol B --seed S
  [--eval-every 1] --out FILE``): the authors' code on the same split and
  evaluator;
* ``--recorded``: per-seed epoch-50 HR@50 of runs no longer on disk, as
  ``SEED=VALUE`` (each side's, ``--recorded-authors`` for the authors').

Prints, for each side, the per-seed HR@50 at epoch 50 and (where every
epoch was evaluated) its mean over epochs 41-50, then the means, their
standard errors and the difference in standard errors (Welch).
"""
import argparse
import glob
import json
import math
import pathlib

import numpy as np


def package_runs(pattern):
    """``{seed: (hr@50 at the last epoch, mean over its last 10 epochs)}``
    of the run folders matching ``pattern``."""
    out = {}
    for folder in sorted(glob.glob(pattern)):
        folder = pathlib.Path(folder)
        if not (folder / 'result.json').is_file():
            continue                       # still running
        seed = json.loads((folder / 'config.json').read_text())['seed']
        curve = [r['hit_rate'] for r in
                 json.loads((folder / 'metrics.json').read_text())]
        out[seed] = (curve[-1], float(np.mean(curve[-10:])))
    return out


def authors_runs(path):
    """The same from the harness' JSON lines (the mean over the last 10
    epochs only for runs evaluated after every epoch)."""
    out = {}
    for line in pathlib.Path(path).read_text().splitlines():
        rec = json.loads(line)
        if rec.get('protocol') != 'B':
            continue
        by_epoch = {c['epoch']: c['hr@50'] for c in rec['curve']}
        last = rec['config']['epochs']
        window = [by_epoch.get(e) for e in range(last - 9, last + 1)]
        tail = (float(np.mean(window)) if None not in window else None)
        out[rec['seed']] = (rec['hr@50'], tail)
    return out


def recorded(pairs):
    return {int(k): (float(v), None) for k, v in
            (p.split('=') for p in pairs or [])}


def summary(name, runs):
    """Print one side; return its epoch-50 values."""
    last = np.array([v[0] for v in runs.values()])
    tails = [v[1] for v in runs.values() if v[1] is not None]
    print(f'{name}: {len(last)} seeds ({", ".join(map(str, sorted(runs)))})')
    for seed in sorted(runs):
        tail = runs[seed][1]
        print(f'  seed {seed}: {runs[seed][0]:.4f}'
              + (f' (mean of the last 10 epochs {tail:.4f})' if tail else ''))
    print(f'  epoch 50: {last.mean():.4f} +- {se(last):.4f} (sd '
          f'{last.std(ddof=1):.4f})')
    if len(tails) > 1:
        print(f'  mean of the last 10 epochs, {len(tails)} seeds: '
              f'{np.mean(tails):.4f} +- {se(np.array(tails)):.4f}')
    return last


def se(values):
    return values.std(ddof=1) / math.sqrt(len(values))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--runs', required=True)
    p.add_argument('--authors', required=True)
    p.add_argument('--recorded', nargs='*')
    p.add_argument('--recorded-authors', nargs='*')
    args = p.parse_args(argv)
    ours = {**recorded(args.recorded), **package_runs(args.runs)}
    theirs = {**recorded(args.recorded_authors),
              **authors_runs(args.authors)}
    a = summary('caser-gluon --preset paper', ours)
    b = summary("the authors' code", theirs)
    diff = b.mean() - a.mean()
    err = math.hypot(se(a), se(b))
    print(f'difference (authors - package): {diff:+.4f} +- {err:.4f} '
          f'= {diff / err:.1f} standard errors')


if __name__ == '__main__':
    main()
