"""Benchmark: this package against the D2L chapter's own code, side by side.

Times the steps of the chapter "Sequence-aware Recommender Systems" on this
machine, in one run, for this package and for the chapter's path (d2l's
functions, or a faithful copy of the chapter's code written here):

a. the sequence-aware split: ``split_seq_aware`` vs
   ``d2l.split_data_ml100k(df, 943, 1682, 'seq-aware')``;
b. the training windows: ``SeqDataset`` vs the chapter's per-sample
   ``_win``/``_seq`` construction (:class:`ChapterSeqDataset` below);
c. one training epoch: :func:`caser_gluon.train.train_epoch` vs a
   ``DataLoader`` over :class:`ChapterSeqDataset` (set-difference negative
   per sample) and the body of ``d2l.train_ranking`` (two forward passes,
   ``d2l.BPRLoss``) on an imperative ``Caser``, as the chapter's
   ``nn.Block`` runs;
d. evaluating all 943 users: ``evaluate_ranking`` vs
   ``d2l.evaluate_ranking`` (which ranks only item ids below 943);
e. ``python -m caser_gluon.train --quiet`` end to end and its peak memory;
f. test hit rate@50 and AUC over seeds for ``--loop fast`` and
   ``--loop d2l``, both scored by this package's all-items evaluator.

It writes ``benchmarks/RESULTS.md`` and ``benchmarks/results.json``. Run
``make bench`` (about 10 minutes) or ``python benchmarks/bench.py --quick``
(a smoke run of a minute or two; its numbers are not comparable).
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import mxnet as mx
import numpy as onp
from mxnet import autograd, gluon, np, npx

from caser_gluon import data as data_lib
from caser_gluon import train as train_lib
from caser_gluon.config import DataConfig, ModelConfig, TrainConfig
from caser_gluon.evaluate import evaluate_ranking
from caser_gluon.prepare import load_data
from caser_gluon.runtime import set_seed
from caser_gluon.zoo import build_model

RECIPE = TrainConfig()      # the chapter's recipe


def build_net(*, num_users, num_items, devices, hybridize=True, **model):
    """A Caser of the chapter's sizes (``model`` overrides them)."""
    return build_model(ModelConfig(**model), num_users=num_users,
                       num_items=num_items, devices=devices,
                       hybridize=hybridize)


def make_trainer(net):
    """The chapter's Adam."""
    return train_lib.make_trainer(net, lr=RECIPE.lr, wd=RECIPE.wd,
                                  optimizer=RECIPE.optimizer,
                                  kvstore=RECIPE.kvstore)


def load_chapter_data(seed):
    """ML-100K, split, windows, as the chapter."""
    return load_data(DataConfig(), L=ModelConfig().L, seed=seed)

__all__ = ['ChapterSeqDataset', 'main', 'run_benchmarks']

npx.set_np()
HERE = pathlib.Path(__file__).resolve().parent


# ---------------------------------------------------------------------------
# The chapter's dataset, copied faithfully for reference timings
# ---------------------------------------------------------------------------

class ChapterSeqDataset(gluon.data.Dataset):
    """The chapter's ``SeqDataset``: per-sample windows and negatives.

    A reference copy of the chapter's construction (its sort by user, its
    ``_win``/``_seq`` generators and per-window assignments into MXNet
    arrays) and of its ``__getitem__``, which draws a negative from the
    set difference of all items and the user's items. One change: the
    negative is returned as a ``(1,)`` array, the target's shape, because
    this package's ``Caser`` keeps the item axis where the chapter's
    squeezes it.
    """

    def __init__(self, user_ids, item_ids, L, num_users, num_items,
                 candidates):
        user_ids, item_ids = np.array(user_ids), np.array(item_ids)
        sort_idx = np.array(sorted(range(len(user_ids)),
                                   key=lambda k: user_ids[k]))
        u_ids, i_ids = user_ids[sort_idx], item_ids[sort_idx]
        temp, u_ids, self.cand = {}, u_ids.asnumpy(), candidates
        self.all_items = set(range(num_items))
        for i in range(len(u_ids)):
            temp.setdefault(u_ids[i], []).append(i)
        temp = sorted(temp.items(), key=lambda x: x[0])
        u_ids = np.array([i[0] for i in temp])
        idx = np.array([i[1][0] for i in temp])
        self.ns = ns = int(sum(c - L if c >= L + 1 else 1 for c in
                               [len(i[1]) for i in temp]))
        self.seq_items = np.zeros((ns, L))
        self.seq_users = np.zeros(ns, dtype='int32')
        self.seq_tgt = np.zeros((ns, 1))
        self.test_seq = np.zeros((num_users, L))
        _uid = None
        for i, (uid, i_seq) in enumerate(self._seq(u_ids, i_ids, idx,
                                                   L + 1)):
            if uid != _uid:
                self.test_seq[uid][:] = i_seq[-L:]
                _uid = uid
            self.seq_tgt[i][:] = i_seq[-1:]
            self.seq_items[i][:], self.seq_users[i] = i_seq[:L], uid

    def _win(self, tensor, window_size, step_size=1):
        if len(tensor) - window_size >= 0:
            for i in range(len(tensor), 0, -step_size):
                if i - window_size >= 0:
                    yield tensor[i - window_size:i]
                else:
                    break
        else:
            yield tensor

    def _seq(self, u_ids, i_ids, idx, max_len):
        for i in range(len(idx)):
            stop_idx = None if i >= len(idx) - 1 else int(idx[i + 1])
            for s in self._win(i_ids[int(idx[i]):stop_idx], max_len):
                yield (int(u_ids[i]), s)

    def __len__(self):
        return self.ns

    def __getitem__(self, idx):
        neg = list(self.all_items - set(self.cand[int(self.seq_users[idx])]))
        i = random.randint(0, len(neg) - 1)
        return (self.seq_users[idx], self.seq_items[idx], self.seq_tgt[idx],
                onp.array([neg[i]], dtype=onp.float32))


def chapter_epoch(net, train_iter, loss, trainer, devices, *,
                  max_batches=None):
    """The body of ``d2l.train_ranking``'s epoch loop, as d2l writes it.

    Returns (mean loss per batch, seconds, examples seen).
    """
    start, total, seen, batches = time.perf_counter(), 0.0, 0, 0
    for values in train_iter:
        input_data = [gluon.utils.split_and_load(v, devices) for v in values]
        with autograd.record():
            p_pos = [net(*t) for t in zip(*input_data[:-1])]
            p_neg = [net(*t) for t in zip(*input_data[:-2],
                                          input_data[-1])]
            ls = [loss(p, n) for p, n in zip(p_pos, p_neg)]
        [ls_i.backward(retain_graph=False) for ls_i in ls]
        total += sum(ls_i.asnumpy() for ls_i in ls).mean() / len(devices)
        trainer.step(values[0].shape[0])
        seen += values[0].shape[0]
        batches += 1
        if max_batches is not None and batches >= max_batches:
            break
    return total / batches, time.perf_counter() - start, seen


# ---------------------------------------------------------------------------
# Timing helpers
# ---------------------------------------------------------------------------

def best_of(fn, repeat):
    """Smallest wall time of ``repeat`` calls, and the last result."""
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def machine():
    """CPU model, cores, library versions, date and load."""
    model = 'unknown'
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    model = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    import d2l
    return {
        'cpu': model,
        'cores': len(os.sched_getaffinity(0)),
        'python': platform.python_version(),
        'mxnet': mx.__version__,
        'numpy': onp.__version__,
        'd2l': d2l.__version__,
        'omp_num_threads': os.environ.get('OMP_NUM_THREADS', 'unset'),
        'date': datetime.datetime.now().isoformat(timespec='seconds'),
        'load_avg_start': list(os.getloadavg()),
    }


# ---------------------------------------------------------------------------
# The steps
# ---------------------------------------------------------------------------

def bench_split(df, num_users, num_items, repeat):
    from d2l import mxnet as d2l
    ours, (train_df, _) = best_of(
        lambda: data_lib.split_seq_aware(df, num_users, num_items), repeat)
    theirs, (d2l_train, _) = best_of(
        lambda: d2l.split_data_ml100k(df, num_users, num_items,
                                      'seq-aware'), 1)
    same = len(train_df) == len(d2l_train) and onp.array_equal(
        train_df.iloc[:, :2].to_numpy(), d2l_train.iloc[:, :2].to_numpy())
    return {'project_s': ours, 'reference_s': theirs,
            'note': f'same training rows: {same}'}


def bench_windows(chapter_inputs, repeat, quick):
    users, items, candidates, num_users, num_items = chapter_inputs
    ours, dataset = best_of(
        lambda: data_lib.SeqDataset(users, items, 5, num_users, num_items,
                                    candidates, seed=0), repeat)
    n = len(users) if not quick else 5000
    theirs, ref = best_of(
        lambda: ChapterSeqDataset(users[:n], items[:n], 5, num_users,
                                  num_items, candidates), 1)
    note = f'{len(dataset)} windows'
    if quick:
        note += f'; chapter timed on the first {n} interactions only'
    else:
        same = onp.array_equal(ref.seq_items.asnumpy().astype(int),
                               dataset.seq_items.astype(int)[:ref.ns]) \
            if ref.ns == len(dataset) else False
        note += f'; same windows: {same}'
    return {'project_s': ours, 'reference_s': theirs, 'note': note}, ref


def bench_epoch(chapter, ref_dataset, devices, quick):
    from d2l import mxnet as d2l
    dataset = chapter['train_seq_data']
    shape = {'num_users': chapter['num_users'],
             'num_items': chapter['num_items'], 'devices': devices}
    set_seed(0)
    net = build_net(**shape)
    trainer = make_trainer(net)
    rng = onp.random.default_rng(0)
    epochs = 1 if quick else 3
    times, scorer = [], train_lib.masked_scorer(net)   # as fit() does
    for _ in range(epochs + 1):       # the first epoch builds the graph
        _, seconds = train_lib.train_epoch(net, dataset, trainer,
                                           batch_size=4096, devices=devices,
                                           rng=rng, loss='bpr', scorer=scorer)
        times.append(seconds)
    ours = min(times[1:])
    # the same loop with the chapter's Conv2D layers, to separate the gain
    # of the layers from the gain of the loop
    set_seed(0)
    conv_net = build_net(**shape, conv='conv2d')
    conv_trainer = make_trainer(conv_net)
    conv_times = [train_lib.train_epoch(
        conv_net, dataset, conv_trainer, batch_size=4096, devices=devices,
        rng=rng, loss='bpr')[1] for _ in range(2)]

    set_seed(0)
    ref_net = build_net(**shape, hybridize=False, conv='conv2d')
    ref_trainer = make_trainer(ref_net)
    train_iter = gluon.data.DataLoader(ref_dataset, 4096, True,
                                       last_batch='rollover', num_workers=0)
    max_batches = 1 if quick else None
    _, seconds, seen = chapter_epoch(ref_net, train_iter, d2l.BPRLoss(),
                                     ref_trainer, devices,
                                     max_batches=max_batches)
    theirs = seconds * len(dataset) / seen
    note = (f'project: best of {epochs} epoch(s) after a warm-up epoch '
            f'(with the chapter\'s Conv2D layers: {conv_times[-1]:.2f} s); '
            f'chapter (imperative Conv2D Caser): ')
    note += (f'{max_batches} batch, extrapolated' if max_batches
             else '1 full epoch')
    note += ', DataLoader num_workers=0'
    return {'project_s': ours, 'reference_s': theirs, 'note': note,
            'project_epochs_s': times}, net


def bench_eval(net, chapter, devices, repeat, quick):
    from d2l import mxnet as d2l
    dataset = chapter['train_seq_data']
    args = (net, chapter['test_input'], dataset.test_seq,
            chapter['candidates'], chapter['num_users'],
            chapter['num_items'], devices)
    ours, (hr, auc) = best_of(lambda: evaluate_ranking(*args), repeat)
    ours_d2l_pool, _ = best_of(
        lambda: evaluate_ranking(*args, num_ranked=chapter['num_users']),
        repeat)
    result = {'project_s': ours, 'project_d2l_pool_s': ours_d2l_pool,
              'hit_rate': hr, 'auc': auc}
    if quick:
        result.update(reference_s=None, note='d2l skipped (--quick)')
        return result
    seq = np.array(dataset.test_seq)
    theirs, (d2l_hr, d2l_auc) = best_of(
        lambda: d2l.evaluate_ranking(*args[:2], seq, *args[3:]), 1)
    pool_hr, pool_auc = evaluate_ranking(*args,
                                         num_ranked=chapter['num_users'])
    result.update(
        reference_s=theirs,
        note=(f'd2l ranks only item ids < 943 (HR {float(d2l_hr):.3f}, '
              f'AUC {float(d2l_auc):.3f}; ours on that pool: HR '
              f'{pool_hr:.3f}, AUC {pool_auc:.3f}); ours ranks all 1682 '
              f'(HR {hr:.3f}, AUC {auc:.3f})'))
    return result


def bench_end_to_end(quick):
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, '-m', 'caser_gluon.train', '--quiet',
               '--out', out, '--overwrite']
        if quick:
            cmd += ['--epochs', '1']
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              check=True)
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {'project_s': seconds, 'peak_rss_mb': peak,
            'output': proc.stdout.strip().splitlines()[-1],
            'command': ' '.join(['python'] + cmd[1:3])}


def bench_quality(devices, seeds, epochs, d2l_epochs):
    out = {'fast': [], 'd2l': []}
    for seed in seeds:
        for loop, num_epochs in [('fast', epochs), ('d2l', d2l_epochs)]:
            if not num_epochs:
                continue
            set_seed(seed)
            chapter = load_chapter_data(seed=seed)
            dataset = chapter['train_seq_data']
            net = build_net(
                num_users=chapter['num_users'],
                num_items=chapter['num_items'], devices=devices,
                conv='dense' if loop == 'fast' else 'conv2d')
            trainer = make_trainer(net)
            eval_args = (chapter['test_input'], dataset.test_seq,
                         chapter['candidates'], chapter['num_users'],
                         chapter['num_items'], devices)
            start = time.perf_counter()
            if loop == 'fast':
                train_lib.fit(net, dataset, trainer, num_epochs=num_epochs,
                              batch_size=4096, devices=devices, seed=seed,
                              loss='bpr', quiet=True)
            else:
                train_lib.fit_d2l(net, dataset, trainer,
                                  num_epochs=num_epochs, batch_size=4096,
                                  devices=devices,
                                  test_input=chapter['test_input'],
                                  candidates=chapter['candidates'],
                                  evaluator=evaluate_ranking)
            seconds = time.perf_counter() - start
            hr, auc = evaluate_ranking(net, *eval_args)
            out[loop].append({'seed': seed, 'epochs': num_epochs,
                              'hit_rate': hr, 'auc': auc,
                              'seconds': seconds})
    return out


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

def _fmt(seconds):
    if seconds is None:
        return 'skipped'
    return f'{seconds * 1e3:.0f} ms' if seconds < 1 else f'{seconds:.2f} s'


def _ratio(row):
    if row.get('reference_s') is None:
        return '-'
    return f"{row['reference_s'] / row['project_s']:.1f}x"


def _mean_std(values):
    if not values:
        return '-'
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f'{statistics.mean(values):.3f} ± {std:.3f}'


def write_report(results, path):
    m = results['machine']
    flag = ' --quick' if results['quick'] else ''
    lines = [
        '# Benchmark: caser_gluon vs the D2L chapter',
        '',
        f"Written by `benchmarks/bench.py{flag}` on {m['date']}.",
        '',
        (f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
        f"mxnet {m['mxnet']}, numpy {m['numpy']}, d2l {m['d2l']}, "
        f"OMP_NUM_THREADS {m['omp_num_threads']}. Load average (1, 5, 15 "
        f"min) at start {m['load_avg_start']}, at end "
        f"{m['load_avg_end']}: other jobs shared the machine when the "
        f"load exceeds 0; timings are then pessimistic."),
        '',
        '| step | caser_gluon | chapter / d2l | speed-up | notes |',
        '| --- | --- | --- | --- | --- |',
    ]
    names = {'split': 'a. sequence-aware split',
             'windows': 'b. training windows',
             'epoch': 'c. one training epoch',
             'eval': 'd. evaluate 943 users'}
    for key, name in names.items():
        row = results[key]
        lines.append(f"| {name} | {_fmt(row['project_s'])} | "
                     f"{_fmt(row.get('reference_s'))} | {_ratio(row)} | "
                     f"{row.get('note', '')} |")
    e2e = results['end_to_end']
    lines.append(f"| e. `{e2e['command']} --quiet` end to end | "
                 f"{_fmt(e2e['project_s'])} | - | - | peak RSS "
                 f"{e2e['peak_rss_mb']:.0f} MB; {e2e['output']} |")
    ref = [results[k].get('reference_s') for k in ('windows', 'epoch',
                                                   'eval')]
    if all(ref):
        chapter_s = ref[0] + 8 * (ref[1] + ref[2])
        lines += ['', (f"The chapter's pipeline end to end (its windows "
                       f"once, then 8 epochs, each followed by "
                       f"`d2l.evaluate_ranking`), from rows b-d of this "
                       f"run: {_fmt(chapter_s)}, against "
                       f"{_fmt(e2e['project_s'])} for row e (which also "
                       f"starts Python and reads the data): "
                       f"{chapter_s / e2e['project_s']:.0f}x.")]
    lines += ['', ('f. Quality (all-items evaluator, batch 4096, '
                   'Caser(10), L=5; the d2l loop with the chapter\'s '
                   'Conv2D layers):'), '',
              '| loop | seeds | epochs | HR@50 | AUC | seconds per run |',
              '| --- | --- | --- | --- | --- | --- |']
    for loop, runs in results['quality'].items():
        if not runs:
            continue
        lines.append(
            f"| {loop} | {', '.join(str(r['seed']) for r in runs)} | "
            f"{runs[0]['epochs']} | "
            f"{_mean_std([r['hit_rate'] for r in runs])} | "
            f"{_mean_std([r['auc'] for r in runs])} | "
            f"{_mean_std([r['seconds'] for r in runs])} |")
    lines += ['', ('Speed-up is chapter time / caser_gluon time. '
                   '`results.json` holds every number.'), '']
    path.write_text('\n'.join(lines))


def run_benchmarks(*, quick=False, seeds=(0, 1, 2), d2l_epochs=8,
                   out_dir=HERE):
    """Run every step and write ``RESULTS.md`` and ``results.json``."""
    from d2l import mxnet as d2l
    results = {'quick': quick, 'machine': machine()}
    devices = [mx.cpu()]
    repeat = 1 if quick else 5

    def step(name):
        print(f'[bench] {name} ...', flush=True)

    step('e. end to end')
    results['end_to_end'] = bench_end_to_end(quick)
    df, num_users, num_items = data_lib.read_ml100k()
    step('a. split')
    results['split'] = bench_split(df, num_users, num_items, repeat)
    train_df, _ = d2l.split_data_ml100k(df, num_users, num_items,
                                              'seq-aware')
    users, items, _, candidates = d2l.load_data_ml100k(
        train_df, num_users, num_items, feedback='implicit')
    step('b. windows')
    results['windows'], ref_dataset = bench_windows(
        (onp.array(users), onp.array(items), candidates, num_users,
         num_items), repeat, quick)
    chapter = load_chapter_data(seed=0)
    step('c. epoch')
    results['epoch'], net = bench_epoch(chapter, ref_dataset, devices,
                                        quick)
    step('d. evaluation')
    results['eval'] = bench_eval(net, chapter, devices, repeat, quick)
    step('f. quality')
    results['quality'] = bench_quality(
        devices, seeds[:1] if quick else seeds, 1 if quick else 8,
        min(d2l_epochs, 1) if quick else d2l_epochs)
    results['machine']['load_avg_end'] = list(os.getloadavg())
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / 'results.json').write_text(json.dumps(results, indent=2)
                                          + '\n')
    write_report(results, out_dir / 'RESULTS.md')
    print((out_dir / 'RESULTS.md').read_text())
    return results


def main(argv=None):
    p = argparse.ArgumentParser(
        description='Time caser_gluon against the D2L chapter.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--quick', action='store_true',
                   help='smoke run: one repeat, one epoch, one seed, '
                        'd2l evaluation skipped; numbers not comparable')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2],
                   help='seeds of the quality runs (f)')
    p.add_argument('--d2l-epochs', type=int, default=8,
                   help='epochs of the --loop d2l quality runs (0: skip)')
    p.add_argument('--out-dir', default=str(HERE),
                   help='where RESULTS.md and results.json go')
    p.add_argument('--report-only', action='store_true',
                   help='rewrite RESULTS.md from results.json')
    args = p.parse_args(argv)
    if args.report_only:
        out_dir = pathlib.Path(args.out_dir)
        results = json.loads((out_dir / 'results.json').read_text())
        write_report(results, out_dir / 'RESULTS.md')
        return
    run_benchmarks(quick=args.quick, seeds=tuple(args.seeds),
                   d2l_epochs=args.d2l_epochs, out_dir=args.out_dir)


if __name__ == '__main__':
    main()
