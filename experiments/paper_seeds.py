"""How far apart are the `paper` preset and the authors' code? (issue 14)

Reads the runs of both and compares them over seeds, metric by metric::

    python experiments/paper_seeds.py --runs 'runs/paper-s*' \
        --authors /tmp/peers-harness/results/authors.jsonl

* ``--runs``: run folders of ``caser-gluon train --preset paper --seed S
  --out runs/paper-sS`` (``result.json``; ``metrics.json``: HR@50 and the
  training loss of every epoch);
* ``--authors``: the JSON lines of the peers' harness
  (``../shared/peers/run_caser_pytorch.py --protocol B --seed S
  [--eval-every 1] --out FILE``): the authors' code on the same split and
  evaluator;
* ``--recorded SEED=HR50 ...`` and ``--recorded-authors SEED=HR50 ...``:
  epoch-50 HR@50 of earlier runs no longer on disk (HR@50 only).

Prints each side's per-seed HR@50, then for every metric the means with
their standard errors and the difference in standard errors (Welch's
statistic): HR@50 and HR@10, NDCG@10, MRR and AUC at epoch 50, HR@50's
mean over epochs 41-50 (runs evaluated after every epoch) and the training
loss of epoch 50 (the authors' normalisation: mean over targets plus mean
over negatives); then the mean learning curves (HR@50 by epoch).
"""
import argparse
import glob
import json
import math
import pathlib

import numpy as np

#: the metrics compared, in the order printed
METRICS = ('hr@50', 'hr@10', 'ndcg@10', 'mrr', 'auc', 'hr@50 (41-50)',
           'train loss')
#: the runs compared: the paper's 50 epochs (shorter runs are skipped)
EPOCHS = 50
#: epochs at which the mean learning curves are compared
CURVE_EPOCHS = (5, 10, 20, 27, 30, 40, 50)


def package_runs(pattern):
    """``{seed: {metric: value}}`` of the run folders matching
    ``pattern`` (those that finished)."""
    out = {}
    for folder in sorted(glob.glob(pattern)):
        folder = pathlib.Path(folder)
        if not (folder / 'result.json').is_file():
            continue                       # still running
        config = json.loads((folder / 'config.json').read_text())
        if config['preset'] != 'paper' or config['epochs'] != EPOCHS:
            continue                       # another recipe or length
        seed = config['seed']
        result = json.loads((folder / 'result.json').read_text())
        epochs = json.loads((folder / 'metrics.json').read_text())
        out[seed] = {**{k: result[k] for k in METRICS[:5]},
                     'hr@50 (41-50)': float(np.mean(
                         [r['hit_rate'] for r in epochs[-10:]])),
                     'train loss': epochs[-1]['train_loss'],
                     'curve': {r['epoch']: r['hit_rate'] for r in epochs}}
    return out


def authors_runs(path):
    """The same from the harness' JSON lines (HR@50 over epochs 41-50 only
    for runs evaluated after every epoch)."""
    out = {}
    for line in pathlib.Path(path).read_text().splitlines():
        rec = json.loads(line)
        if rec.get('protocol') != 'B' or rec['config']['epochs'] != EPOCHS:
            continue
        by_epoch = {c['epoch']: c['hr@50'] for c in rec['curve']}
        last = rec['config']['epochs']
        window = [by_epoch.get(e) for e in range(last - 9, last + 1)]
        out[rec['seed']] = {**{k: rec[k] for k in METRICS[:5]},
                            'train loss': rec['epochs'][-1]['loss'],
                            'curve': by_epoch}
        if None not in window:
            out[rec['seed']]['hr@50 (41-50)'] = float(np.mean(window))
    return out


def recorded(pairs):
    return {int(k): {'hr@50': float(v)} for k, v in
            (p.split('=') for p in pairs or [])}


def column(runs, metric):
    return np.array([r[metric] for r in runs.values() if metric in r])


def se(values):
    return values.std(ddof=1) / math.sqrt(len(values))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--runs', required=True)
    p.add_argument('--authors', required=True)
    p.add_argument('--recorded', nargs='*')
    p.add_argument('--recorded-authors', nargs='*')
    args = p.parse_args(argv)
    sides = {'caser-gluon --preset paper': {**recorded(args.recorded),
                                            **package_runs(args.runs)},
             "the authors' code": {**recorded(args.recorded_authors),
                                   **authors_runs(args.authors)}}
    for name, runs in sides.items():
        print(f'{name}, HR@50 at epoch 50 by seed: ' + ', '.join(
            f'{s}: {runs[s]["hr@50"]:.4f}' for s in sorted(runs)))
    print('\n| metric | caser-gluon (seeds) | authors (seeds) | '
          'authors - caser-gluon | in standard errors |')
    print('| --- | --- | --- | --- | --- |')
    for metric in METRICS:
        a, b = (column(runs, metric) for runs in sides.values())
        if len(a) < 2 or len(b) < 2:
            continue
        diff, err = b.mean() - a.mean(), math.hypot(se(a), se(b))
        print(f'| {metric} | {a.mean():.4f} ± {se(a):.4f} ({len(a)}) | '
              f'{b.mean():.4f} ± {se(b):.4f} ({len(b)}) | {diff:+.4f} ± '
              f'{err:.4f} | {diff / err:+.1f} |')
    print('\nHR@50 by epoch, mean ± standard error over the seeds:\n')
    print('| epoch | ' + ' | '.join(sides) + ' |')
    print('| --- | --- | --- |')
    for epoch in CURVE_EPOCHS:
        cells = []
        for runs in sides.values():
            v = np.array([r['curve'][epoch] for r in runs.values()
                          if epoch in r.get('curve', {})])
            cells.append(f'{v.mean():.4f} ± {se(v):.4f} ({len(v)})'
                         if len(v) > 1 else '')
        print(f'| {epoch} | ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
    main()
