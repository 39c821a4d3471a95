"""The chapter's exercises, measured: ablations, ``L``, targets, losses.

The chapter ends with exercises it leaves to the reader: remove the
horizontal or the vertical convolutions, vary the sequence length ``L``.
This module runs them (and the paper's variants: ``T`` targets per window,
other losses), with two baselines a reader needs to judge the numbers (the
most popular items, and BPR-MF, i.e. Caser without the sequence), each over
several seeds, and writes ``experiments/RESULTS.md`` and plots.

``make experiments`` runs the full grid; ``--quick`` a small one for CI.
"""
import argparse
import json
import pathlib
import sys
import time
import warnings

import numpy as onp

from . import data as data_lib
from . import train as train_lib
from .evaluate import score_all_items
from .metrics import ranking_metrics

__all__ = [
    'CONFIGS',
    'QUICK_CONFIGS',
    'main',
    'popularity_scores',
    'run_config',
    'run_grid',
    'summarise',
    'write_report',
]

#: name -> (Caser keyword arguments, or None for the popularity baseline;
#:          data and loop keyword arguments)
CONFIGS = {
    'caser (chapter)': ({}, {}),
    'horizontal only (d_prime=0)': ({'d_prime': 0}, {}),
    'vertical only (d=0)': ({'d': 0}, {}),
    'no user embedding': ({'use_user': False}, {}),
    'no sequence (BPR-MF)': ({'use_seq': False}, {}),
    'most popular': (None, {}),
    **{f'L={L}': ({'L': L}, {}) for L in (1, 3, 7, 9)},
    'T=2 targets': ({}, {'targets': 2}),
    'T=3 targets': ({}, {'targets': 3}),
    'hinge loss': ({}, {'loss': 'hinge'}),
    'BCE, 3 negatives': ({}, {'loss': 'bce', 'num_negatives': 3}),
}
QUICK_CONFIGS = ['caser (chapter)', 'horizontal only (d_prime=0)',
                 'vertical only (d=0)', 'most popular', 'L=3']
REPORTED = ['hr@10', 'ndcg@10', 'hit_rate', 'auc', 'train_seconds']


def popularity_scores(dataset, num_users):
    """The most-popular baseline: every user gets the training counts.

    Returns
    -------
    numpy.ndarray of float, shape (num_users, num_items)
    """
    counts = dataset.seen.sum(axis=0).astype(float)
    return onp.broadcast_to(counts, (num_users, len(counts)))


def _evaluate_scores(scores, chapter):
    """Mean metrics of a score matrix, the way ``evaluate_all`` ranks."""
    n, m = chapter['num_users'], chapter['num_items']
    per_user = ranking_metrics(
        scores, data_lib.seen_mask(chapter['test_input'], n, m),
        data_lib.seen_mask(chapter['candidates'], n, m), ks=(1, 5, 10, 50))
    means = {key: float(v.mean()) for key, v in per_user.items()}
    means['hit_rate'] = means['hr@50']
    return means


def run_config(name, *, chapter, seed, epochs, devices):
    """Train and evaluate one configuration with one seed.

    Returns
    -------
    dict
        The final epoch's metrics, ``train_seconds`` (all epochs), ``name``
        and ``seed``.
    """
    model_kwargs, loop_kwargs = CONFIGS[name]
    dataset = chapter['train_seq_data']
    if model_kwargs is None:
        start = time.perf_counter()
        scores = popularity_scores(dataset, chapter['num_users'])
        record = _evaluate_scores(scores, chapter)
        record['train_seconds'] = time.perf_counter() - start
    else:
        train_lib.set_seed(seed)
        net = train_lib.build_net(num_users=chapter['num_users'],
                                  num_items=chapter['num_items'],
                                  devices=devices, **model_kwargs)
        trainer = train_lib.make_trainer(net)
        history = train_lib.fit(
            net, dataset, trainer, num_epochs=epochs, batch_size=4096,
            devices=devices, seed=seed, quiet=True,
            loss=loop_kwargs.get('loss', 'bpr'),
            num_negatives=loop_kwargs.get('num_negatives'))
        scores = score_all_items(net, dataset.test_seq, device=devices[0])
        record = _evaluate_scores(scores, chapter)
        record['train_seconds'] = sum(h['train_seconds'] for h in history)
    return dict(record, name=name, seed=seed)


def run_grid(names, *, seeds, epochs, devices, progress=True):
    """Every configuration in ``names`` with every seed; a list of records.

    Datasets are built once per (L, T) and seed.
    """
    from tqdm.auto import tqdm
    cache, records = {}, []
    jobs = [(name, seed) for name in names for seed in seeds]
    for name, seed in tqdm(jobs, desc='experiments', disable=not progress):
        model_kwargs, loop_kwargs = CONFIGS[name]
        key = ((model_kwargs or {}).get('L', 5),
               loop_kwargs.get('targets', 1), seed)
        if key not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', data_lib.DataWarning)
                cache[key] = train_lib.load_chapter_data(
                    L=key[0], targets=key[1], seed=seed)
        records.append(run_config(name, chapter=cache[key], seed=seed,
                                  epochs=epochs, devices=devices))
    return records


def summarise(records):
    """Mean and standard deviation of each reported metric per config.

    Returns
    -------
    dict of str to dict of str to (mean, std)
    """
    table = {}
    for record in records:
        table.setdefault(record['name'], []).append(record)
    return {name: {key: (float(onp.mean([r[key] for r in rows])),
                         float(onp.std([r[key] for r in rows])))
                   for key in REPORTED}
            for name, rows in table.items()}


def write_report(records, out_dir, *, seeds, epochs):
    """``RESULTS.md``, ``results.json`` and ``hit_rate.png`` in ``out_dir``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarise(records)
    intro = (f'Written by `make experiments` ({time.strftime("%Y-%m-%d")})'
             f': ML-100K, sequence-aware split, all items ranked, {epochs} '
             f'epochs, batch 4096, Adam lr 0.04, seeds '
             f'{", ".join(map(str, seeds))}; mean ± standard deviation over '
             f'the seeds.')
    header = ('| configuration | HR@10 | NDCG@10 | HR@50 | AUC | '
              'train seconds |')
    lines = ['# Experiments: the chapter\'s exercises, measured', '', intro,
             '', header, '| --- | --- | --- | --- | --- | --- |']
    for name, row in summary.items():
        cells = [f'{row[k][0]:.3f} ± {row[k][1]:.3f}' for k in REPORTED]
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    (out_dir / 'RESULTS.md').write_text('\n'.join(lines) + '\n')
    (out_dir / 'results.json').write_text(json.dumps(records, indent=1))
    names = list(summary)
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.35 * len(names) + 1.5),
                             sharey=True)
    for ax, key, label in [(axes[0], 'hr@10', 'HR@10'),
                           (axes[1], 'hit_rate', 'HR@50')]:
        ax.barh(names, [summary[n][key][0] for n in names],
                xerr=[summary[n][key][1] for n in names], color='C0')
        ax.set_xlabel(label)
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(out_dir / 'hit_rate.png', dpi=100)
    plt.close(fig)
    return out_dir / 'RESULTS.md'


def main(argv=None):
    """``python -m caser_gluon.experiments``: run the grid, write a report."""
    p = argparse.ArgumentParser(
        prog='python -m caser_gluon.experiments', description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--quick', action='store_true',
                   help='5 configurations, 1 seed, 1 epoch (for CI)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2],
                   help='seeds of each configuration')
    p.add_argument('--epochs', type=int, default=8, help='training epochs')
    p.add_argument('--only', nargs='+', default=None, choices=list(CONFIGS),
                   metavar='NAME', help='run only these configurations')
    p.add_argument('--out', default='experiments',
                   help='folder of RESULTS.md, results.json, hit_rate.png')
    p.add_argument('--devices', default='auto', help='as for training')
    args = p.parse_args(argv)
    # the ablations leave an input of the block unused, on purpose
    warnings.filterwarnings('ignore', message='.*not used by any computation')
    names = args.only or (QUICK_CONFIGS if args.quick else list(CONFIGS))
    seeds = args.seeds[:1] if args.quick else args.seeds
    epochs = 1 if args.quick else args.epochs
    records = run_grid(names, seeds=seeds, epochs=epochs,
                       devices=train_lib.resolve_devices(args.devices),
                       progress=sys.stderr.isatty())
    path = write_report(records, args.out, seeds=seeds, epochs=epochs)
    print(path.read_text())


if __name__ == '__main__':
    main()
