"""Benchmark: other layouts of Caser's horizontal convolutions, other engines.

Issue 12 asks for a training step about 1.5x cheaper than today's
``DenseIntent`` (ML-10M's epoch at 30 s, ML-100K's at 0.3 s). This script
times, side by side in one process (steps interleaved, so all see the same
load), the chapter's training step (batch 4096, ``Caser(10)``, ``L=5``,
``d=16``, ``d'=4``, dropout 0.05 with masks drawn in NumPy, BPR, Adam,
flush-to-zero on) with the intent computed as

* ``model``: today's :class:`caser_gluon.model.DenseIntent` (a dense
  layer per window of the image, maxima, one dense layer per height);
* ``stacked``: the same windows, the five pooled heights stacked into one
  ``(b, L d)`` tensor, then one activation, one dropout mask and one dense
  layer instead of five (fewer operators, one stack more);
* ``late-bias``: ``stacked`` with the windows' dense layers without bias,
  the heights' biases added once after the maxima (``max(y + c) = max(y)
  + c``);
* ``toeplitz``: a lower bound for a block-Toeplitz layout: one dense layer
  per window position ``t`` on the whole image, all heights at once (``L
  d`` outputs; the weights are free parameters here, so building them from
  the filters is not even counted), and ``L - 1`` maxima on ``(b, L d)``;
* ``toeplitz-split``: one dense layer to all ``L L d`` outputs, cut by
  ``np.split``;
* ``no-horizontal``, ``no-vertical``: not layouts but bounds, the model
  without its horizontal (``d=0``) or vertical (``d'=0``) filters: what
  the rest of the step costs, the most a faster layout of that part could
  save;

and, for ``model`` only, in separate processes (MXNet reads these at
start-up): one OpenMP thread, two engine workers of one thread each
(independent heights could run in parallel), the synchronous
``NaiveEngine``, and ``hybridize(static_alloc=False)``.

Run ``python benchmarks/bench_layouts.py`` (about 4 minutes; ``--steps
10``: a smoke run) on an otherwise idle machine; it prints a markdown
report (``--out FILE`` also writes it). ``--profile LAYOUT`` prints MXNet's
profile of one layout's step instead: milliseconds per step of each
operator, where the time goes.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_step  # this folder's step and machine helpers

__all__ = ['ABLATIONS', 'LAYOUTS', 'SETTINGS', 'layout_class', 'main', 'worker']

LAYOUTS = ('model', 'stacked', 'late-bias', 'toeplitz', 'toeplitz-split',
           'no-horizontal', 'no-vertical')

#: ablations, not layouts: what the step costs without one of the parts
ABLATIONS = {'no-horizontal': {'d': 0}, 'no-vertical': {'d_prime': 0}}

#: engine settings: (name, environment, hybridize's static_alloc)
SETTINGS = (
    ('default', {}, True),
    ('OMP_NUM_THREADS=1', {'OMP_NUM_THREADS': '1'}, True),
    ('2 engine workers x 1 thread', {'MXNET_CPU_WORKER_NTHREADS': '2',
                                     'OMP_NUM_THREADS': '1'}, True),
    ('NaiveEngine', {'MXNET_ENGINE_TYPE': 'NaiveEngine'}, True),
    ('static_alloc=False', {}, False),
)

K, L, D, D_PRIME, DROP = 10, 5, 16, 4, 0.05


def layout_class(name):
    """The ``DenseIntent`` subclass computing layout ``name``."""
    from mxnet.gluon import nn

    from caser_gluon.model import DenseIntent, _activate

    class Stacked(DenseIntent):
        """Pooled heights stacked: one activation, mask and dense layer."""

        late_bias = False

        @property
        def mask_widths(self):
            return (self.d_prime * self.num_factors, self.L * self.d)

        def hybrid_forward(self, F, image, mask_v, mask_h, *, fc_weight,
                           fc_bias, **params):
            k, L, d_prime = self.num_factors, self.L, self.d_prime
            v = self._vertical_features(F, image, params) * mask_v
            pre = F.npx.fully_connected(v, fc_weight[:, :d_prime * k],
                                        fc_bias, num_hidden=k)
            pooled = [self._pooled(F, image, h, params)
                      for h in range(1, L + 1)]
            z = F.npx.reshape(F.np.stack(pooled, axis=1), (-2, -1))
            if self.late_bias:
                z = z + F.np.concatenate([params[f'conv_h{h}_bias']
                                          for h in range(1, L + 1)])
            z = _activate(F, z, self.ac_conv) * mask_h
            pre = pre + F.npx.fully_connected(
                z, fc_weight[:, d_prime * k:], None, no_bias=True,
                num_hidden=k)
            return _activate(F, pre, self.ac_fc)

        def _pooled(self, F, image, h, params):
            """Height ``h``'s windows through its filters, max over time."""
            k, d = self.num_factors, self.d
            weight = params[f'conv_h{h}_weight']
            bias = None if self.late_bias else params[f'conv_h{h}_bias']
            pooled = None
            for t in range(self.L - h + 1):
                window = image[:, t * k:(t + h) * k]
                y = F.npx.fully_connected(window, weight, bias,
                                          no_bias=bias is None,
                                          num_hidden=d)
                pooled = y if pooled is None else F.np.maximum(pooled, y)
            return pooled

    class LateBias(Stacked):
        """``Stacked`` with the heights' biases added after the maxima."""

        late_bias = True

    class Toeplitz(DenseIntent):
        """Free ``(L, L d, L k)`` weights: one dense layer per position."""

        split = False

        def __init__(self, k, L, d, d_prime, drop_ratio, *, ac_conv='relu',
                     ac_fc='relu'):
            nn.HybridBlock.__init__(self)    # no per-height filters
            self.num_factors, self.L, self.d, self.d_prime = k, L, d, d_prime
            self.drop_ratio, self.dropout_on = drop_ratio, 'features'
            self.ac_conv, self.ac_fc = ac_conv, ac_fc
            get = self.params.get
            self.conv_v_weight = get('conv_v_weight', shape=(d_prime, L))
            self.conv_v_bias = get('conv_v_bias', shape=(d_prime,),
                                   init='zeros')
            self.fc_weight = get('fc_weight', shape=(k, d_prime * k + d * L))
            self.fc_bias = get('fc_bias', shape=(k,), init='zeros')
            self.toeplitz_weight = get('toeplitz_weight',
                                       shape=(L, L * d, L * k))
            self.toeplitz_bias = get('toeplitz_bias', shape=(L, L * d),
                                     init='zeros')

        @property
        def mask_widths(self):
            return (self.d_prime * self.num_factors, self.L * self.d)

        def hybrid_forward(self, F, image, mask_v, mask_h, *, fc_weight,
                           fc_bias, toeplitz_weight, toeplitz_bias,
                           **params):
            k, L, d, d_prime = (self.num_factors, self.L, self.d,
                                self.d_prime)
            v = self._vertical_features(F, image, params) * mask_v
            pre = F.npx.fully_connected(v, fc_weight[:, :d_prime * k],
                                        fc_bias, num_hidden=k)
            if self.split:
                y = F.npx.fully_connected(
                    image, F.np.reshape(toeplitz_weight, (L * L * d, L * k)),
                    F.np.reshape(toeplitz_bias, (-1,)),
                    num_hidden=L * L * d)
                parts = F.np.split(y, L, axis=1)
            else:
                parts = [F.npx.fully_connected(
                    image, toeplitz_weight[t], toeplitz_bias[t],
                    num_hidden=L * d) for t in range(L)]
            pooled = parts[0]
            for part in parts[1:]:
                pooled = F.np.maximum(pooled, part)
            z = _activate(F, pooled, self.ac_conv) * mask_h
            pre = pre + F.npx.fully_connected(
                z, fc_weight[:, d_prime * k:], None, no_bias=True,
                num_hidden=k)
            return _activate(F, pre, self.ac_fc)

    class ToeplitzSplit(Toeplitz):
        """``Toeplitz`` as one dense layer cut by ``np.split``."""

        split = True

    return {'model': DenseIntent, 'stacked': Stacked, 'late-bias': LateBias,
            'toeplitz': Toeplitz, 'toeplitz-split': ToeplitzSplit}[name]


def build(layout, *, static_alloc=True):
    """A hybridized Caser with ``layout``'s intent, its trainer, scorer."""
    import mxnet as mx

    from caser_gluon.model import Caser
    from caser_gluon.train import make_trainer, masked_scorer
    sizes = {'d': D, 'd_prime': D_PRIME, **ABLATIONS.get(layout, {})}
    net = Caser(K, bench_step.USERS, bench_step.ITEMS, L=L,
                drop_ratio=DROP, **sizes)
    if layout != 'model' and layout not in ABLATIONS:
        net.intent = layout_class(layout)(K, L, D, D_PRIME, DROP)
    net.initialize(init=mx.init.Normal(0.01))
    net.hybridize(static_alloc=static_alloc, static_shape=False)
    trainer = make_trainer(net, lr=0.04, wd=1e-5, optimizer='adam',
                           kvstore='device')
    return net, trainer, masked_scorer(net)


def time_layouts(layouts, *, steps, static_alloc=True, seed=0):
    """Median and quartiles (ms) of interleaved training steps."""
    import numpy as onp
    from mxnet import np
    rng = onp.random.default_rng(seed)
    nets = {name: build(name, static_alloc=static_alloc) for name in layouts}
    times = {name: [] for name in layouts}
    B, users, items = bench_step.BATCH, bench_step.USERS, bench_step.ITEMS
    for i in range(steps + 3):                        # 3 warm-up steps
        batch = (np.array(rng.integers(0, users, B)),
                 np.array(rng.integers(0, items + 1, (B, L))),
                 np.array(rng.integers(0, items, (B, 2)), dtype='int32'))
        for name, (net, trainer, scorer) in nets.items():
            start = time.perf_counter()
            bench_step.step(net, trainer, scorer, *batch, rng)
            if i >= 3:
                times[name].append(1e3 * (time.perf_counter() - start))
    return {name: bench_step.summary(t) for name, t in times.items()}


def profile(layout, *, steps, seed=0):
    """Milliseconds per step of each MXNet operator (its profiler), sorted.

    Returns a list of ``(operator, calls per step, ms per step)``.
    """
    import mxnet as mx
    import numpy as onp
    from mxnet import np
    rng = onp.random.default_rng(seed)
    net, trainer, scorer = build(layout)
    B, users, items = bench_step.BATCH, bench_step.USERS, bench_step.ITEMS

    def one_step():
        bench_step.step(net, trainer, scorer,
                        np.array(rng.integers(0, users, B)),
                        np.array(rng.integers(0, items + 1, (B, L))),
                        np.array(rng.integers(0, items, (B, 2)),
                                 dtype='int32'), rng)
    for _ in range(3):
        one_step()
    mx.profiler.set_config(profile_imperative=True, profile_symbolic=True,
                           aggregate_stats=True)
    mx.profiler.set_state('run')
    for _ in range(steps):
        one_step()
    mx.profiler.set_state('stop')
    stats = json.loads(mx.profiler.dumps(format='json'))['Time']
    operators = stats.get('operator', {})
    rows = [(name, s['Count'] / steps, s['Total'] / steps)
            for name, s in operators.items()]
    return sorted(rows, key=lambda row: -row[2])


def worker(args):
    """Time in this process (its environment set by :func:`main`)."""
    from caser_gluon.fpu import enable_flush_to_zero
    enable_flush_to_zero()
    import mxnet  # noqa: F401  (after the MXCSR is set: its threads)
    layouts = LAYOUTS if args.setting == 'default' else ('model',)
    static_alloc = {n: s for n, _, s in SETTINGS}[args.setting]
    print(json.dumps(time_layouts(layouts, steps=args.steps,
                                  static_alloc=static_alloc)))


def report(results, *, steps, machine_before):
    """The markdown report of every setting's timings."""
    when = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    load = ', '.join(f'{x:.2f}' for x in os.getloadavg())
    setup = (f'Batch {bench_step.BATCH}, Caser({K}), L={L}, d={D}, '
             f"d'={D_PRIME}, dropout {DROP} (NumPy masks), BPR, Adam, "
             f'flush-to-zero on; forward + backward + trainer.step, {steps} '
             f"steps after 3 warm-up ones; within a setting, the layouts' "
             f'steps interleaved. Settings other than `default` run in '
             f'processes of their own, one after the other: compare them '
             f'on a quiet machine only.')
    written = (f'Written by `python benchmarks/bench_layouts.py --steps '
               f'{steps} --batch {bench_step.BATCH}` on {when}.')
    lines = ['# Layouts of the horizontal convolutions, and MXNet engines',
             '', written, '', f'Machine: {machine_before}', '',
             setup, '',
             '| setting | layout | step ms (median) | q1-q3 | vs model |',
             '| --- | --- | --- | --- | --- |']
    for setting, timings in results.items():
        base = timings['model']['median']
        for name, s in timings.items():
            lines.append(f"| {setting} | {name} | {s['median']:.1f} | "
                         f"{s['q1']:.1f}-{s['q3']:.1f} | "
                         f"{s['median'] / base:.2f} |")
    lines += ['', f'Load average at the end: {load}']
    return '\n'.join(lines) + '\n'


def main(argv=None):
    """One worker process per setting; print (and save) the report."""
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--steps', type=int, default=40,
                   help='timed steps per layout')
    p.add_argument('--batch', type=int, default=bench_step.BATCH,
                   help='rows a step')
    p.add_argument('--out', help='also write the report to this file')
    p.add_argument('--profile', choices=LAYOUTS,
                   help="instead: MXNet's profile of this layout's step "
                        '(ms per step per operator)')
    p.add_argument('--setting', choices=[n for n, _, _ in SETTINGS],
                   help='(internal) be the worker of this setting')
    args = p.parse_args(argv)
    bench_step.BATCH = args.batch         # read by build's steps and report
    if args.setting:
        return worker(args)
    if args.profile:
        from caser_gluon.fpu import enable_flush_to_zero
        enable_flush_to_zero()
        rows = profile(args.profile, steps=args.steps)
        total = sum(ms for _, _, ms in rows)
        print(f'{args.profile}: operators {total:.1f} ms a step '
              f'({bench_step.machine()})\n')
        print('| operator | calls a step | ms a step |\n| --- | ---: | ---: |')
        for name, calls, ms in rows:
            print(f'| {name} | {calls:g} | {ms:.2f} |')
        return None
    machine_before = bench_step.machine()
    results = {}
    for name, env, _ in SETTINGS:
        cmd = [sys.executable, os.path.abspath(__file__), '--setting', name,
               '--steps', str(args.steps), '--batch', str(args.batch)]
        out = subprocess.run(cmd, capture_output=True, text=True,
                             check=False, env={**os.environ, **env})
        if out.returncode:
            sys.exit(f'bench_layouts: the {name!r} worker failed:\n'
                     f'{out.stderr[-2000:]}')
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f'{name}: done', file=sys.stderr, flush=True)
    text = report(results, steps=args.steps, machine_before=machine_before)
    print(text)
    if args.out:
        try:
            with open(args.out, 'x') as f:       # never overwrite a report
                f.write(text)
        except FileExistsError:
            sys.exit(f'bench_layouts: --out {args.out}: the file exists '
                     f'(the report is printed above)')


if __name__ == '__main__':
    main()
