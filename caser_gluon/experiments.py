"""The chapter's exercises, measured: ablations, ``L``, targets, losses.

The chapter ends with exercises it leaves to the reader: remove the
horizontal or the vertical convolutions, vary the sequence length ``L``.
This module runs them (and the paper's variants: ``T`` targets per window,
other losses), with two baselines a reader needs to judge the numbers (the
most popular items, and BPR-MF, i.e. Caser without the sequence), each over
several seeds, and writes ``RESULTS.md``, ``results.json`` and a plot.

``caser-gluon experiments`` writes into a fresh ``runs/experiments-<time>``
folder; ``make experiments`` writes the committed ``experiments/`` report
(asked for explicitly, with ``--out experiments --overwrite``).
"""
import argparse
import json
import pathlib
import sys
import time
import warnings

import numpy as onp

from .averaging import ParameterAverage
from .config import RunConfig, from_flat, with_preset
from .data import DataWarning
from .evaluate import evaluate_blocks, evaluate_model
from .prepare import load_data
from .runs import RunFolder, strict_json
from .runtime import resolve_devices, set_seed
from .train import fit, make_trainer, wants_lazy
from .zoo import build_model

__all__ = [
    'CONFIGS',
    'QUICK_CONFIGS',
    'add_flags',
    'difference',
    'popularity_scorer',
    'run_config',
    'run_grid',
    'summarise',
    'write_report',
]

#: name -> changes to the chapter's recipe (flat config fields, a
#: ``preset`` among them), or None for the most-popular baseline
CONFIGS = {
    'caser (chapter)': {},
    'horizontal only (d_prime=0)': {'d_prime': 0},
    'vertical only (d=0)': {'d': 0},
    'no user embedding': {'use_user': False},
    'no sequence (BPR-MF)': {'use_seq': False},
    'most popular': None,
    **{f'L={L}': {'L': L} for L in (1, 3, 7, 9)},
    'T=2 targets': {'targets': 2},
    'T=3 targets': {'targets': 3},
    'hinge loss': {'loss': 'hinge'},
    'BCE, 3 negatives': {'loss': 'bce', 'num_negatives': 3},
    'sampled softmax, 100 negatives': {'loss': 'sampled',
                                       'num_negatives': 100},
    'full softmax (CE)': {'loss': 'ce'},
    'caser, 24 epochs (tuned on validation)': {'epochs': 24},
    'caser, no user embedding, 37 epochs (session-based)': {
        'use_user': False, 'epochs': 37},
    'GRU4Rec, lr 0.03, 17 epochs (session-based)': {
        'model': 'gru4rec', 'lr': 0.03, 'epochs': 17, 'drop_ratio': 0.2},
    'SASRec, lr 0.003, 22 epochs (session-based)': {
        'model': 'sasrec', 'lr': 0.003, 'epochs': 22, 'drop_ratio': 0.2},
    'preset paper': {'preset': 'paper'},
    'preset best': {'preset': 'best'},
}
#: measured elsewhere, on this split with one evaluator (issue 14, the
#: harness in ../shared/peers): name -> (HR@10, HR@50, NDCG@10, AUC)
REFERENCE_ROWS = {
    "caser_pytorch, the authors' defaults (seeds 3-15)":
        (0.200, 0.483, 0.108, 0.903),
    "caser_pytorch, the authors' defaults (seeds 0-2)":
        (0.204, 0.499, 0.110, 0.905),
    'RecBole 1.2.1 Caser, its defaults, L=5, 35 epochs (seeds 0-2)':
        (0.215, 0.5175, 0.115, 0.910),
}
QUICK_CONFIGS = ['caser (chapter)', 'horizontal only (d_prime=0)',
                 'vertical only (d=0)', 'most popular', 'L=3']
REPORTED = ['hr@10', 'ndcg@10', 'hit_rate', 'auc', 'train_seconds']


def popularity_scorer(dataset):
    """The most-popular baseline: every user gets the training counts.

    Returns
    -------
    callable
        ``score(start, stop) -> (stop - start, num_items)`` scores.
    """
    counts = dataset.seen.item_counts().astype(float)
    return lambda start, stop: onp.broadcast_to(counts,
                                                (stop - start, len(counts)))


def run_config(name, *, chapter, config, devices):
    """Train and evaluate one configuration (one seed) of ``CONFIGS``.

    Returns
    -------
    dict
        The final metrics, ``train_seconds`` (all epochs), ``name`` and
        ``seed``.
    """
    dataset, t = chapter['train_seq_data'], config.train
    sets = {'relevant': chapter['test_input'],
                'excluded': chapter['candidates']}
    start = time.perf_counter()
    if CONFIGS[name] is None:
        record = evaluate_blocks(popularity_scorer(dataset), **sets)
        record['train_seconds'] = time.perf_counter() - start
        return dict(record, name=name, seed=t.seed)
    set_seed(t.seed)
    net = build_model(config.model, num_users=chapter['num_users'],
                      num_items=chapter['num_items'], devices=devices)
    trainer = make_trainer(net, lr=t.lr, wd=t.wd, optimizer=t.optimizer,
                           kvstore=t.kvstore, lazy=wants_lazy(t))
    average, on_epoch = _averaging(net, t)
    history = fit(net, dataset, trainer, num_epochs=t.epochs,
                  batch_size=t.batch_size, devices=devices, seed=t.seed,
                  loss=t.loss, num_negatives=t.num_negatives, quiet=True,
                  lazy_update=t.lazy_update, on_epoch=on_epoch)
    if average is not None:
        average.copy_to(net)
    record = evaluate_model(net, test_seq=dataset.test_seq,
                            device=devices[0], **sets)
    record['train_seconds'] = sum(h['train_seconds'] for h in history)
    return dict(record, name=name, seed=t.seed)


def _averaging(net, train):
    """``(ParameterAverage, on_epoch callback)`` for ``--average-last``
    (the last epochs that ``train.epochs`` has), or ``(None, None)``."""
    average = ParameterAverage.last(train.average_last,
                                    num_epochs=train.epochs)
    if average is None:
        return None, None
    return average, lambda record: average.update(net, record['epoch'])


def run_grid(names, *, seeds, epochs=None, devices, progress=True):
    """Every configuration in ``names`` with every seed; a list of records.

    ``epochs`` overrides every configuration's own number of epochs.
    Datasets are built once per (L, T) and seed.
    """
    from tqdm.auto import tqdm
    cache, records = {}, []
    jobs = [(name, seed) for name in names for seed in seeds]
    for name, seed in tqdm(jobs, desc='experiments', disable=not progress):
        values = {**(CONFIGS[name] or {}), 'seed': seed}
        if epochs is not None:
            values['epochs'] = epochs
        config = from_flat(with_preset(values))
        key = (config.model.L, config.data.targets, seed)
        if key not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', DataWarning)
                cache[key] = load_data(config.data, L=key[0], seed=seed)
        record = run_config(name, chapter=cache[key], config=config,
                            devices=devices)
        records.append(dict(record, epochs=config.train.epochs))
    return records


def summarise(records):
    """Mean, standard deviation and count of each metric per config.

    Returns
    -------
    dict of str to dict of str to (mean, std, n)
        ``std`` is the sample standard deviation (0 for one seed); the
        ``epochs`` key holds the configuration's epochs.
    """
    table = {}
    for record in records:
        table.setdefault(record['name'], []).append(record)
    return {name: {key: _stats([r[key] for r in rows])
                   for key in REPORTED + ['epochs']}
            for name, rows in table.items()}


def _stats(values):
    values = onp.asarray(values, dtype=float)
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return float(values.mean()), std, len(values)


def difference(row, base, key='hit_rate'):
    """``(mean difference, its standard error, counts)`` of ``key``.

    A difference counts when it exceeds twice its standard error
    ``sqrt(s1^2 / n1 + s2^2 / n2)``; with one seed there is no error.
    """
    (m1, s1, n1), (m2, s2, n2) = row[key], base[key]
    se = (s1 ** 2 / n1 + s2 ** 2 / n2) ** 0.5
    return m1 - m2, se, bool(n1 > 1 and n2 > 1 and abs(m1 - m2) > 2 * se)


def _table(summary):
    """The markdown rows of the results and reference rows."""
    base = summary.get('caser (chapter)')
    lines = [('| configuration | epochs | HR@10 | NDCG@10 | HR@50 | AUC | '
             'train seconds | HR@50 - chapter |'),
             '| --- | --- | --- | --- | --- | --- | --- | --- |']
    for name, row in summary.items():
        cells = [f'{row[k][0]:.3f} ± {row[k][1]:.3f}' for k in REPORTED]
        diff = '-'
        if base is not None and name != 'caser (chapter)':
            delta, se, counts = difference(row, base)
            diff = f'{delta:+.3f} ± {se:.3f}' + (' **yes**' if counts
                                                  else ' no')
        lines.append(f'| {name} | {row["epochs"][0]:.0f} | '
                     + ' | '.join(cells) + f' | {diff} |')
    for name, (hr10, hr50, ndcg, auc) in REFERENCE_ROWS.items():
        lines.append(f'| {name} (measured elsewhere) | | {hr10:.3f} | '
                     f'{ndcg:.3f} | {hr50:.3f} | {auc:.3f} | | |')
    return lines


def write_report(records, folder, *, seeds):
    """``RESULTS.md``, ``results.json`` and ``hit_rate.png`` in ``folder``."""
    summary = summarise(records)
    intro = (f'Written by `make experiments` ({time.strftime("%Y-%m-%d")})'
             ': ML-100K, the chapter\'s sequence-aware split, all items '
             'ranked except the training items; each configuration is the '
             'chapter\'s recipe (Caser(10), L=5, BPR, Adam lr 0.04, batch '
             '4096) with the changes its name says (presets: see the '
             'README), seeds ' + ', '.join(map(str, seeds)) + '; mean ± '
             'sample standard deviation over the seeds. "HR@50 - chapter" '
             'is the difference of the means ± its standard error; it counts'
             ' (**yes**) when it exceeds twice its standard error. The last '
             'rows were measured with the harness of ../shared/peers, on '
             'the same split and evaluator.')
    lines = ["# Experiments: the chapter's exercises, measured", '', intro,
             '', *_table(summary)]
    (folder.dir / 'RESULTS.md').write_text('\n'.join(lines) + '\n')
    (folder.dir / 'results.json').write_text(strict_json(records))
    _plot(summary, folder.dir / 'hit_rate.png')
    return folder.dir / 'RESULTS.md'


def _plot(summary, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
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
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args):
    """``caser-gluon experiments``: run the grid, write a report."""
    names = args.only or (QUICK_CONFIGS if args.quick else list(CONFIGS))
    seeds = args.seeds[:1] if args.quick else args.seeds
    epochs = 1 if args.quick else args.epochs     # None: each its own
    folder = RunFolder(args.out, overwrite=args.overwrite,
                       prefix='experiments', files=REPORT_FILES)
    try:
        if args.records:
            records, seeds = _read_records(args.records)
        else:
            records = run_grid(names, seeds=seeds, epochs=epochs,
                               devices=resolve_devices(args.devices),
                               progress=sys.stderr.isatty())
        path = write_report(records, folder, seeds=seeds)
    finally:
        folder.close()
    print(path.read_text())
    print(json.dumps({'report': str(path)}))


def _read_records(paths):
    """The records of earlier runs' ``results.json`` files, in order."""
    records = []
    for path in paths:
        try:
            records += json.loads(pathlib.Path(path).read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f'{path}: not a results.json ({err})') from None
    order = list(CONFIGS)
    records.sort(key=lambda r: order.index(r['name'])
                 if r.get('name') in order else len(order))
    return records, sorted({r['seed'] for r in records})


REPORT_FILES = ('RESULTS.md', 'results.json', 'hit_rate.png')


def _count(minimum):
    def parse(text):
        if not text.isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(
                f'expected an integer >= {minimum}, got {text!r}')
        return int(text)
    parse.__name__ = 'integer'
    return parse


def add_flags(p):
    """``caser-gluon experiments``' flags on parser ``p``."""
    p.description = __doc__.split('\n\n')[0]
    p.add_argument('--quick', action='store_true',
                   help='5 configurations, 1 seed, 1 epoch (for CI)')
    p.add_argument('--seeds', type=_count(0), nargs='+', default=[0, 1, 2],
                   help='seeds of each configuration (default: 0 1 2)')
    p.add_argument('--epochs', type=_count(1), default=None,
                   help="training epochs of every configuration (default: "
                        "each its own: the chapter's 8, a preset's)")
    p.add_argument('--only', nargs='+', default=None, choices=list(CONFIGS),
                   metavar='NAME', help='run only these configurations')
    p.add_argument('--out', default=None,
                   help='folder of RESULTS.md, results.json, hit_rate.png '
                        '(default: a fresh runs/experiments-<time>)')
    p.add_argument('--overwrite', action='store_true',
                   help='replace the report in --out')
    p.add_argument('--devices', default=RunConfig().train.devices,
                   help='as for training')
    p.add_argument('--records', nargs='+', default=None, metavar='JSON',
                   help='train nothing: rebuild the report from these '
                        'results.json files (e.g. a grid run in parts)')
    p.set_defaults(handler=run)
    return p
