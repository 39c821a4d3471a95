"""How the chapter's Caser pipeline grows with the size of the data.

The D2L chapter "Sequence-aware Recommender Systems" trains Caser on
ML-100K. This benchmark runs the same command on synthetic files of the
MovieLens shapes, 100K to 32M ratings (``synth_movielens.py``; generated
once, then cached), one epoch each::

    python -m caser_gluon.train --ratings FILE --epochs 1 --quiet --out RUN

and measures the wall time and the peak resident memory of that process
(``getrusage(RUSAGE_CHILDREN)`` in a fresh helper process per shape, so
the maximum is this run's). Per-phase times come from the run folder:
``metrics.json`` (``train_seconds``, ``examples_per_sec``,
``eval_seconds``) and ``config.json``'s ``data`` (``load_seconds``,
``windows_seconds``, ``num_windows``); ``-`` where the package does not
record them. A shape that fails or times out is reported with its exit
code and last line of stderr, and the next shape still runs. Each run's
address space is capped (``--max-memory-gb``), so that a run that would
need more fails with ``MemoryError`` instead of exhausting a shared
machine; ``--repeat N`` reports the median of N runs.

Writes ``benchmarks/scale.json`` (raw rows, merged by shape with earlier
runs), ``benchmarks/SCALE.md`` (table, machine, fitted growth exponents)
and ``benchmarks/scale.png`` (log-log plot)::

    python benchmarks/bench_scale.py --shapes ml-100k ml-1m
    python benchmarks/bench_scale.py --report-only
    python benchmarks/bench_scale.py --shapes ml-1m -- --batch-size 8192
"""
import argparse
import json
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import synth_movielens as synth

__all__ = ['PHASES', 'fit_exponents', 'machine', 'main', 'plot',
           'run_shape', 'to_markdown']

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
# row key, label in the table and the plot
PHASES = [('load_seconds', 'load'), ('windows_seconds', 'windows'),
          ('epoch_seconds', 'epoch'), ('eval_seconds', 'evaluation'),
          ('wall_seconds', 'whole run'), ('peak_rss_gb', 'peak RSS')]

# Runs a command under a memory cap (address space, so that numpy raises
# MemoryError instead of the machine running out), then prints its wall
# time and the peak RSS of its tree.
HELPER = '''
import json, os, resource, signal, subprocess, sys, time
spec = json.loads(sys.argv[1])


def cap():
    if spec['max_bytes']:
        resource.setrlimit(resource.RLIMIT_AS, (spec['max_bytes'],) * 2)


start = time.perf_counter()
with open(spec['stdout'], 'w') as out, open(spec['stderr'], 'w') as err:
    child = subprocess.Popen(spec['cmd'], stdout=out, stderr=err,
                             env=spec['env'], preexec_fn=cap,
                             start_new_session=True)
    try:
        code = child.wait(timeout=spec['timeout'])
    except subprocess.TimeoutExpired:      # the run and anything it started
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        code = 'timeout'
wall = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
scale = 1 if sys.platform == 'darwin' else 1024      # bytes / KiB
print(json.dumps({'exit': code, 'wall_seconds': wall,
                  'peak_rss_gb': rss * scale / 1e9}))
'''


def _child_env():
    """This checkout's package first on the path."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [str(ROOT)] + [p for p in [env.get('PYTHONPATH')] if p])
    return env


def _read_run(run):
    """Phase times of a run folder (absent keys are left out)."""
    row = {}
    if (run / 'metrics.json').is_file():
        first = json.loads((run / 'metrics.json').read_text())[0]
        row['epoch_seconds'] = first.get('train_seconds')
        for key in ('examples_per_sec', 'eval_seconds', 'hit_rate', 'auc'):
            row[key] = first.get(key)
    if (run / 'config.json').is_file():
        data = json.loads((run / 'config.json').read_text()).get('data', {})
        for key in ('load_seconds', 'windows_seconds', 'num_windows'):
            row[key] = data.get(key)
    return {k: v for k, v in row.items() if v is not None}


def run_shape(shape, *, seed=0, epochs=1, timeout=3600, max_memory_gb=None,
              train_args=()):
    """Generate (or reuse) one shape's file and train on it once.

    Parameters
    ----------
    shape : str
        A key of ``synth_movielens.SHAPES``.
    seed, epochs : int
    timeout : float
        Seconds before the training process is killed.
    max_memory_gb : float, optional
        Cap on the process's address space (``RLIMIT_AS``): beyond it,
        allocations fail with ``MemoryError``. None or 0: no cap.
    train_args : sequence of str
        More flags of ``python -m caser_gluon.train``.

    Returns
    -------
    dict
        ``shape, users, items, ratings, file_mb, generate_seconds`` (0 when
        cached), ``exit`` (0, a code, or ``'timeout'``), ``error`` (last
        stderr line), ``wall_seconds, peak_rss_gb`` and the phase times.
    """
    params = synth.resolve_shape(shape)
    start = time.perf_counter()
    path = synth.generate(shape, seed=seed, quiet=False)
    row = {'shape': shape, 'users': params['users'],
           'items': params['items'], 'ratings': params['ratings'],
           'file_mb': round(path.stat().st_size / 1e6, 1),
           'generate_seconds': round(time.perf_counter() - start, 1),
           'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
           'load_before': os.getloadavg()[0],
           'max_memory_gb': max_memory_gb or None}
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f'caser-scale-{shape}-'))
    run = ROOT / 'runs' / 'scale' / shape       # replaced: --overwrite
    cmd = [sys.executable, '-m', 'caser_gluon.train', '--ratings', str(path),
           '--epochs', str(epochs), '--seed', str(seed), '--quiet', '--out',
           str(run), '--overwrite', *train_args]
    shown = ['python', *cmd[1:]]
    shown[shown.index('--ratings') + 1] = str(path).replace(
        str(pathlib.Path.home()), '~')
    shown[shown.index('--out') + 1] = 'RUN'
    row['command'] = ' '.join(shown)
    spec = {'cmd': cmd, 'timeout': timeout, 'env': _child_env(),
            'max_bytes': int((max_memory_gb or 0) * 1e9),
            'stdout': str(tmp / 'stdout'), 'stderr': str(tmp / 'stderr')}
    try:
        done = subprocess.run([sys.executable, '-c', HELPER, json.dumps(spec)],
                              capture_output=True, text=True, check=True)
        row.update(json.loads(done.stdout))
        row.update(_read_run(run))
        lines = (tmp / 'stderr').read_text().strip().splitlines()
        if row['exit'] != 0:
            row['error'] = lines[-1].strip() if lines else ''
        if row['exit'] == 'timeout':
            row['error'] = f'stopped after --timeout {timeout:g} s'
        elif row['exit'] < 0:
            row['error'] = (f'killed by {signal.Signals(-row["exit"]).name}'
                            f'; last stderr line: {row["error"]}')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    row['load_after'] = os.getloadavg()[0]
    return row


def _median_row(runs):
    """One row from repeated runs of a shape: the median of each time.

    The first failed run if any; otherwise the first run's row with each
    measured key replaced by its median, and ``repeats``: every run's.
    """
    failed = [r for r in runs if r.get('exit') != 0]
    if failed or len(runs) == 1:
        return (failed or runs)[0]
    row = dict(runs[0], load_after=runs[-1]['load_after'])
    keys = [k for k, _ in PHASES] + ['examples_per_sec']
    for key in keys:
        values = [r[key] for r in runs if r.get(key) is not None]
        if len(values) == len(runs):
            row[key] = float(np.median(values))
    row['repeats'] = [{k: r.get(k) for k in keys} for r in runs]
    return row


def _total_memory_gb():
    return os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 1e9


def machine():
    """CPU model, cores, memory, mxnet version: a dict."""
    info = {'cpu': 'unknown', 'nproc': os.cpu_count(), 'memory_gb': None}
    try:
        lscpu = subprocess.run(['lscpu'], capture_output=True, text=True,
                               check=False).stdout
        info['cpu'] = next(line.split(':', 1)[1].strip()
                           for line in lscpu.splitlines()
                           if line.startswith('Model name'))
    except (OSError, StopIteration):
        pass
    if hasattr(os, 'sched_getaffinity'):
        info['nproc'] = len(os.sched_getaffinity(0))
    info['memory_gb'] = round(_total_memory_gb(), 1)
    try:
        from importlib.metadata import version
        info['mxnet'] = version('mxnet')
    except ImportError:
        info['mxnet'] = 'not installed'
    return info


def fit_exponents(rows):
    """Slope of log(value) on log(ratings) per phase, ``ml-*`` shapes only.

    Returns
    -------
    dict of str to (float, list of str)
        Phase key -> (exponent, shapes used); phases with fewer than two
        sizes are left out.
    """
    out = {}
    for key, _ in PHASES:
        use = [r for r in rows if r['shape'].startswith('ml-')
               and r.get('exit') == 0 and r.get(key)]
        if len({r['ratings'] for r in use}) >= 2:
            x = np.log([r['ratings'] for r in use])
            y = np.log([r[key] for r in use])
            out[key] = (float(np.polyfit(x, y, 1)[0]),
                        [r['shape'] for r in use])
    return out


def _cell(value, fmt):
    return '-' if value is None else format(value, fmt)


def _status(row):
    """'ok', or how the run failed."""
    if row.get('exit') == 0:
        runs = len(row.get('repeats', []))
        return f'ok (median of {runs} runs)' if runs > 1 else 'ok'
    if row.get('exit') == 'timeout':
        return row.get('error', 'timeout')
    return f"exit {row.get('exit')}: {row.get('error', '')}"


def _template(rows):
    """The training command of the rows, with FILE for the ratings."""
    words = rows[0]['command'].split() if rows else ['-']
    if '--ratings' in words:
        words[words.index('--ratings') + 1] = 'FILE'
    return ' '.join(words)


def to_markdown(rows, info, *, command):
    """The table, growth exponents and machine: markdown text."""
    lines = [('| shape | users | items | ratings | load s | windows s | '
              'epoch s | evaluation s | examples/s | peak RSS GB | '
              'whole run s | status |'),
             '| --- | ' + '---: | ' * 10 + '--- |']
    for r in rows:
        status = _status(r).replace('|', '/')
        cells = [r['shape'], f"{r['users']:,}", f"{r['items']:,}",
                 f"{r['ratings']:,}", _cell(r.get('load_seconds'), '.1f'),
                 _cell(r.get('windows_seconds'), '.1f'),
                 _cell(r.get('epoch_seconds'), '.1f'),
                 _cell(r.get('eval_seconds'), '.1f'),
                 _cell(r.get('examples_per_sec'), ',.0f'),
                 _cell(r.get('peak_rss_gb'), '.2f'),
                 _cell(r.get('wall_seconds'), '.1f'), status]
        lines.append('| ' + ' | '.join(cells) + ' |')
    commands = list(dict.fromkeys(r.get('bench_command', command)
                                  for r in rows))
    slopes = fit_exponents(rows)
    growth = [f'{label}{"" if key == "peak_rss_gb" else " time"} grows as '
              f'ratings^{slopes[key][0]:.2f} ({", ".join(slopes[key][1])})'
              for key, label in PHASES if key in slopes]
    lines += ['', 'Fitted growth (least squares on log-log, ml-* shapes): '
              + ('; '.join(growth) if growth else
                 'needs two sizes that ran') + '.', '']
    dates = sorted({r['date'] for r in rows})
    loads = ', '.join(f"{r['shape']} {r['load_before']:.1f} -> "
                      f"{r['load_after']:.1f}" for r in rows)
    lines += [f"Machine: {info['cpu']}, {info['nproc']} cores, "
              f"{info['memory_gb']} GB memory, mxnet {info['mxnet']}. "
              f"Measured {dates[0]}" + (f' to {dates[-1]}' if len(dates) > 1
                                         else '') +
              f'; load average (1 min) before -> after each run: {loads}.',
              '', (f'Command: `{"`, `".join(commands)}`; each shape runs '
                   f'`{_template(rows)}` where FILE is `~/.cache/caser-gluon/'
                   'synthetic/<shape>-seed<seed>.<ext>` and RUN a run '
                   'folder.')]
    return '\n'.join(lines) + '\n'


def plot(rows, path):
    """``scale.png``: each phase's time and the peak RSS against ratings."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    slopes = fit_exponents(rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for index, (key, label) in enumerate(PHASES):
        ax = axes[1] if key == 'peak_rss_gb' else axes[0]
        use = [r for r in rows if r.get(key)]
        if not use:
            continue
        fitted = [r for r in use if r['shape'].startswith('ml-')
                  and r.get('exit') == 0]
        if key in slopes:
            label = f'{label} (slope {slopes[key][0]:.2f})'
        drawn = ax.plot([r['ratings'] for r in fitted],
                        [r[key] for r in fitted], marker='o', label=label,
                        color=f'C{index}')
        for marker, group in [
                ('s', [r for r in use if r not in fitted
                       and r.get('exit') == 0]),
                ('x', [r for r in use if r.get('exit') != 0])]:
            ax.plot([r['ratings'] for r in group], [r[key] for r in group],
                    marker=marker, linestyle='none', fillstyle='none',
                    color=drawn[0].get_color())
    axes[0].set(xlabel='ratings', ylabel='seconds',
                title='time per phase (1 epoch)')
    axes[1].set(xlabel='ratings', ylabel='GB',
                title='peak resident memory')
    for ax in axes:
        if any(len(line.get_xdata()) for line in ax.get_lines()):
            ax.set(xscale='log', yscale='log')
            ax.grid(True, which='both', alpha=0.3)
            ax.legend(fontsize=8)
    fig.text(0.01, 0.01, 'circles: MovieLens shapes (fitted); squares: '
             'other shapes (sparse-30k); x: failed runs', fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write_report(results, out_dir):
    """``SCALE.md`` (its table part, if it has markers) and ``scale.png``."""
    rows = sorted(results['rows'], key=lambda r: r['ratings'])
    table = to_markdown(rows, results['machine'],
                        command=results['command'])
    md = out_dir / 'SCALE.md'
    begin, end = '<!-- table -->\n', '<!-- /table -->\n'
    text = md.read_text() if md.exists() else ''
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + begin + table + end + rest.split(end, 1)[1]
    else:
        text = ('# Scaling up: the pipeline on MovieLens-shaped data\n\n'
                'Synthetic files of each shape (`benchmarks/'
                'synth_movielens.py`), one epoch of the chapter\'s recipe; '
                'regenerate with `python benchmarks/bench_scale.py`.\n\n'
                + begin + table + end)
    md.write_text(text)
    if rows:
        plot(rows, out_dir / 'scale.png')


def main(argv=None):
    """``python benchmarks/bench_scale.py [--shapes ...] [--report-only]``."""
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--shapes', nargs='+', choices=list(synth.SHAPES),
                   default=['sparse-30k', 'ml-100k', 'ml-1m', 'ml-10m',
                            'ml-20m', 'ml-32m'],
                   help='shapes to run, in this order')
    p.add_argument('--seed', type=int, default=0,
                   help='seed of the data and of training')
    p.add_argument('--epochs', type=int, default=1, help='epochs per shape')
    p.add_argument('--repeat', type=int, default=1,
                   help='runs per shape; the table shows the medians')
    p.add_argument('--timeout', type=float, default=3600,
                   help='seconds before a shape\'s training is killed')
    p.add_argument('--max-memory-gb', type=float,
                   default=round(_total_memory_gb() * 0.6, 1),
                   help='address-space cap of each training run (60%% of '
                        'this machine\'s memory); 0: none')
    p.add_argument('--out-dir', default=str(HERE),
                   help='where scale.json, SCALE.md and scale.png go')
    p.add_argument('--report-only', action='store_true',
                   help='rebuild SCALE.md and scale.png from scale.json')
    p.add_argument('train_args', nargs='*', metavar='-- TRAIN_ARGS',
                   help='more flags of python -m caser_gluon.train')
    args = p.parse_args(argv)
    out_dir = pathlib.Path(args.out_dir)
    raw = out_dir / 'scale.json'
    results = json.loads(raw.read_text()) if raw.is_file() else {'rows': []}
    if args.report_only:
        if not results['rows']:
            p.exit(2, f'{p.prog}: error: {raw}: no measured rows\n')
        _write_report(results, out_dir)
        print(f'wrote {out_dir / "SCALE.md"} from {raw}')
        return
    results['machine'] = machine()
    results['command'] = shlex.join(
        ['python', 'benchmarks/bench_scale.py'] + list(
            argv if argv is not None else sys.argv[1:]))
    for shape in args.shapes:
        runs = []
        while len(runs) < args.repeat and all(r['exit'] == 0 for r in runs):
            runs.append(run_shape(
                shape, seed=args.seed, epochs=args.epochs,
                timeout=args.timeout,
                max_memory_gb=args.max_memory_gb,
                train_args=args.train_args))
        row = dict(_median_row(runs), bench_command=results['command'])
        results['rows'] = [r for r in results['rows']
                           if r['shape'] != shape] + [row]
        out_dir.mkdir(parents=True, exist_ok=True)
        raw.write_text(json.dumps(results, indent=2) + '\n')
        _write_report(results, out_dir)
        print(f"{shape}: {_status(row)}, whole run {row['wall_seconds']:.1f} s, "
              f"peak RSS {row['peak_rss_gb']:.2f} GB", flush=True)
    print(f'wrote {raw}, {out_dir / "SCALE.md"}, {out_dir / "scale.png"}')


if __name__ == '__main__':
    main()
