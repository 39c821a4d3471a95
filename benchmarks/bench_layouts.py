"""Benchmark: other layouts of Caser's horizontal convolutions, other engines.

Issue 12 asks for a training step about 1.5x cheaper than today's
``DenseIntent`` (ML-10M's epoch at 30 s, ML-100K's at 0.3 s). This script
times, side by side in one process (steps interleaved, the order rotated
every step, so all see the same load), the chapter's training step (batch
4096, ``Caser(10)``, ``L=5``, ``d=16``, ``d'=4``, dropout 0.05 with masks
drawn in NumPy, BPR, Adam, flush-to-zero on) with the intent computed as

* ``model``: :class:`caser_gluon.model.DenseIntent`, ``conv='dense'`` (a
  dense layer per window of the image, maxima, one dense layer per
  height);
* ``fused``: ``conv='fused'``, the horizontal filters and their maxima in
  one compiled operator (:mod:`caser_gluon.fused`), the default where it
  builds;
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

and, for ``model`` only, in processes of their own (MXNet reads these at
start-up): the default engine again (the reference of these rows), one
OpenMP thread, two engine workers of one thread each with and without
bulk execution (with it, MXNet runs up to 15 operators of a graph as one
engine task; without, independent heights may run at once), the
synchronous ``NaiveEngine``, and ``hybridize(static_alloc=False)``.

The layouts are written for this benchmark only: dropout on the features
with the masks given (two of them: vertical, horizontal).
``tests/test_bench_layouts.py`` checks that each computes the model's
intent and gradients.

Run ``python benchmarks/bench_layouts.py`` (about 5 minutes; ``--steps
10``: a smoke run) on an otherwise idle machine; it prints a markdown
report (``--out FILE`` also writes it, never over an existing file).
``--profile LAYOUT`` prints MXNet's profile of one layout's step instead
(milliseconds per step of each operator); ``--ops`` the cost per element
of a few operators, forward and backward, on narrow and wide tensors.
"""
import argparse
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import warnings

__all__ = ['ABLATIONS', 'LAYOUTS', 'SETTINGS', 'build', 'layout_classes',
           'main', 'op_costs', 'profile', 'time_layouts']

HERE = pathlib.Path(__file__).resolve().parent


def _load_bench_step():
    """``bench_step.py`` of this folder (benchmarks is no package)."""
    spec = importlib.util.spec_from_file_location(
        'bench_step', HERE / 'bench_step.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench_step = _load_bench_step()

LAYOUTS = ('model', 'fused', 'stacked', 'late-bias', 'toeplitz',
           'toeplitz-split', 'no-horizontal', 'no-vertical')

#: ablations, not layouts: what the step costs without one of the parts
ABLATIONS = {'no-horizontal': {'d': 0}, 'no-vertical': {'d_prime': 0}}

#: engine settings: (name, environment, hybridize's static_alloc)
SETTINGS = (
    ('default', {}, True),
    ('default, model alone', {}, True),
    ('OMP_NUM_THREADS=1', {'OMP_NUM_THREADS': '1'}, True),
    ('2 engine workers x 1 thread', {'MXNET_CPU_WORKER_NTHREADS': '2',
                                     'OMP_NUM_THREADS': '1'}, True),
    ('2 engine workers x 1 thread, no bulk execution',
     {'MXNET_CPU_WORKER_NTHREADS': '2', 'OMP_NUM_THREADS': '1',
      'MXNET_EXEC_BULK_EXEC_TRAIN': '0'}, True),
    ('NaiveEngine', {'MXNET_ENGINE_TYPE': 'NaiveEngine'}, True),
    ('static_alloc=False', {}, False),
)

K, L, D, D_PRIME, DROP = 10, 5, 16, 4, 0.05


def layout_classes():
    """``{name: class}`` of the layouts (``DenseIntent`` for ``model``).

    Defined on call, once mxnet may be imported (after flush-to-zero).
    """
    from mxnet.gluon import nn

    from caser_gluon.dense_intent import DenseIntent
    from caser_gluon.dense_intent import activate as _activate

    class Features:
        """Mixin: the vertical part and the dense layer after both parts.

        Masks: ``(b, d' k)`` vertical, ``(b, L d)`` horizontal.
        """

        @property
        def mask_widths(self):
            """Two masks: the vertical features, the pooled heights."""
            return (self.d_prime * self.num_factors, self.L * self.d)

        def _vertical(self, F, image, mask_v, fc_weight, fc_bias, params):
            """``W_fc,v (mask_v * vertical) + b_fc``: (b, k)."""
            k, d_prime = self.num_factors, self.d_prime
            v = self._vertical_features(F, image, params) * mask_v
            return F.npx.fully_connected(v, fc_weight[:, :d_prime * k],
                                         fc_bias, num_hidden=k)

        def _intent(self, F, pre, pooled, mask_h, fc_weight):
            """``act(pre + W_fc,h (mask_h * act(pooled)))``: (b, k)."""
            k, d_prime = self.num_factors, self.d_prime
            z = _activate(F, pooled, self.ac_conv) * mask_h
            pre = pre + F.npx.fully_connected(
                z, fc_weight[:, d_prime * k:], None, no_bias=True,
                num_hidden=k)
            return _activate(F, pre, self.ac_fc)

    class Stacked(Features, DenseIntent):
        """The model's windows; the pooled heights stacked, ``(b, L d)``."""

        late_bias = False

        def hybrid_forward(self, F, image, mask_v, mask_h, *, fc_weight,
                           fc_bias, **params):
            """The intent (b, k) of the image (b, L k)."""
            pre = self._vertical(F, image, mask_v, fc_weight, fc_bias, params)
            pooled = [self._pooled(F, image, h, params)
                      for h in range(1, self.L + 1)]
            pooled = F.npx.reshape(F.np.stack(pooled, axis=1), (-2, -1))
            if self.late_bias:
                pooled = pooled + F.np.concatenate(
                    [params[f'conv_h{h}_bias'] for h in range(1, self.L + 1)])
            return self._intent(F, pre, pooled, mask_h, fc_weight)

        def _pooled(self, F, image, h, params):
            """Height ``h``'s windows through its filters, max over time."""
            k, L, d = self.num_factors, self.L, self.d
            bias = None if self.late_bias else params[f'conv_h{h}_bias']
            pooled = None
            for t in range(L - h + 1):
                window = image if h == L else image[:, t * k:(t + h) * k]
                y = F.npx.fully_connected(
                    window, params[f'conv_h{h}_weight'], bias,
                    no_bias=bias is None, num_hidden=d)
                pooled = y if pooled is None else F.np.maximum(pooled, y)
            return pooled

    class LateBias(Stacked):
        """``Stacked`` with the heights' biases added after the maxima."""

        late_bias = True

    class Toeplitz(Features, DenseIntent):
        """Free ``(L, L d, L k)`` weights: one dense layer per position."""

        split = False

        def __init__(self, num_factors, L, d, d_prime, drop_ratio, *,
                     ac_conv='relu', ac_fc='relu', **kwargs):
            nn.HybridBlock.__init__(self, **kwargs)  # not the filters
            k = num_factors
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

        def hybrid_forward(self, F, image, mask_v, mask_h, *, fc_weight,
                           fc_bias, toeplitz_weight, toeplitz_bias,
                           **params):
            """The intent (b, k) of the image (b, L k)."""
            k, L, d = self.num_factors, self.L, self.d
            pre = self._vertical(F, image, mask_v, fc_weight, fc_bias, params)
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
            return self._intent(F, pre, pooled, mask_h, fc_weight)

    class ToeplitzSplit(Toeplitz):
        """``Toeplitz`` as one dense layer cut by ``np.split``."""

        split = True

    return {'model': DenseIntent, 'stacked': Stacked, 'late-bias': LateBias,
            'toeplitz': Toeplitz, 'toeplitz-split': ToeplitzSplit}


def build(layout, *, static_alloc=True):
    """A hybridized Caser with ``layout``'s intent.

    Parameters
    ----------
    layout : str
        One of :data:`LAYOUTS`.
    static_alloc : bool
        Of ``hybridize``.

    Returns
    -------
    (net, trainer, scorer)
        As ``bench_step.build``: Adam, and the masked scorer the loop uses.
    """
    import mxnet as mx

    from caser_gluon.model import Caser
    from caser_gluon.train import make_trainer, masked_scorer
    sizes = {'d': D, 'd_prime': D_PRIME, **ABLATIONS.get(layout, {})}
    net = Caser(K, bench_step.USERS, bench_step.ITEMS, L=L,
                drop_ratio=DROP, conv='fused' if layout == 'fused' else 'dense',
                **sizes)
    if layout not in ('model', 'fused') and layout not in ABLATIONS:
        net.intent = layout_classes()[layout](K, L, D, D_PRIME, DROP)
    net.initialize(init=mx.init.Normal(0.01))
    net.hybridize(static_alloc=static_alloc, static_shape=False)
    trainer = make_trainer(net, lr=0.04, wd=1e-5, optimizer='adam',
                           kvstore='device')
    return net, trainer, masked_scorer(net)


def _random_batch(rng, batch):
    """Users (b,), sequences (b, L) and two items (b, 2), as MXNet arrays."""
    from mxnet import np
    users, items = bench_step.USERS, bench_step.ITEMS
    return (np.array(rng.integers(0, users, batch)),
            np.array(rng.integers(0, items + 1, (batch, L))),
            np.array(rng.integers(0, items, (batch, 2)), dtype='int32'))


def time_layouts(layouts, *, steps, batch, static_alloc=True, seed=0):
    """Milliseconds of training steps, the layouts interleaved.

    Every step draws one batch, which each layout trains on in turn; the
    order rotates by one each step. 3 warm-up steps are not counted.

    Returns
    -------
    dict
        ``{layout: {'median', 'q1', 'q3', 'n'}}``.
    """
    import numpy as onp
    rng = onp.random.default_rng(seed)
    nets = [(name, build(name, static_alloc=static_alloc))
            for name in layouts]
    times = {name: [] for name in layouts}
    for i in range(steps + 3):
        arrays = _random_batch(rng, batch)
        shift = i % len(nets)
        for name, (net, trainer, scorer) in nets[shift:] + nets[:shift]:
            start = time.perf_counter()
            bench_step.step(net, trainer, scorer, *arrays, rng)
            if i >= 3:
                times[name].append(1e3 * (time.perf_counter() - start))
    return {name: bench_step.summary(t) for name, t in times.items()}


def profile(layout, *, steps, batch, seed=0):
    """Milliseconds a step of each MXNet operator (its profiler).

    The profiler's trace goes to a temporary file, deleted afterwards.

    Returns
    -------
    list of (operator, calls a step, ms a step)
        Costliest first.
    """
    import mxnet as mx
    import numpy as onp
    rng = onp.random.default_rng(seed)
    net, trainer, scorer = build(layout)
    for _ in range(3):
        bench_step.step(net, trainer, scorer, *_random_batch(rng, batch), rng)
    with tempfile.TemporaryDirectory() as tmp:
        mx.profiler.set_config(profile_imperative=True,
                               profile_symbolic=True, aggregate_stats=True,
                               filename=os.path.join(tmp, 'profile.json'))
        mx.profiler.set_state('run')
        for _ in range(steps):
            bench_step.step(net, trainer, scorer,
                            *_random_batch(rng, batch), rng)
        mx.profiler.set_state('stop')
        stats = json.loads(mx.profiler.dumps(format='json'))['Time']
    rows = [(name, s['Count'] / steps, s['Total'] / steps)
            for name, s in stats.get('operator', {}).items()]
    return sorted(rows, key=lambda row: -row[2])


def op_costs(*, batch, repeat=30):
    """Nanoseconds an element of a few operators, forward + backward.

    Each runs hybridized (static allocation) on float32 inputs of
    ``(batch, width)``; the time per call is divided by the input's
    elements.

    Returns
    -------
    list of (operator, shape, ms a call, ns an element)
    """
    import mxnet as mx
    import numpy as onp
    from mxnet import autograd, np
    from mxnet.gluon import nn

    class Op(nn.HybridBlock):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def hybrid_forward(self, F, x, y):
            return self.fn(F, x, y)

    b = batch
    cases = [
        ('relu', (b, 16), lambda F, x, y: F.npx.relu(x)),
        ('relu', (b, 400), lambda F, x, y: F.npx.relu(x)),
        ('np.maximum', (b, 16), lambda F, x, y: F.np.maximum(x, y)),
        ('np.maximum', (b, 400), lambda F, x, y: F.np.maximum(x, y)),
        ('np.max over 5, (b, 80, 5)', (b, 400), lambda F, x, y: F.np.max(
            F.npx.reshape(x, (b, 80, 5)), axis=2)),
        ('npx.pooling max 5, (b, 80, 5, 1)', (b, 400),
         lambda F, x, y: F.npx.pooling(F.npx.reshape(x, (b, 80, 5, 1)),
                                       kernel=(5, 1), pool_type='max')),
    ]
    rng = onp.random.default_rng(0)
    rows = []
    # the one-input operators leave y unused: Gluon's warning is expected
    warnings.filterwarnings('ignore', message='The 1-th input')
    for name, shape, fn in cases:
        x, y = (np.array(rng.normal(size=shape).astype('float32'))
                for _ in range(2))
        x.attach_grad()
        y.attach_grad()
        block = Op(fn)
        block.hybridize(static_alloc=True)
        seconds = []
        for i in range(repeat + 3):
            start = time.perf_counter()
            with autograd.record():
                out = block(x, y)
            out.backward()
            mx.nd.waitall()
            if i >= 3:
                seconds.append(time.perf_counter() - start)
        ms = 1e3 * sorted(seconds)[len(seconds) // 2]
        rows.append((name, shape, ms, 1e6 * ms / (shape[0] * shape[1])))
    return rows


def _worker(args, ftz):
    """Time in this process (its environment set by :func:`main`)."""
    alone = args.setting != 'default'
    layouts = ('model',) if alone else LAYOUTS
    static_alloc = {n: s for n, _, s in SETTINGS}[args.setting]
    timings = time_layouts(layouts, steps=args.steps, batch=args.batch,
                           static_alloc=static_alloc)
    print(json.dumps({'ftz': ftz, 'timings': timings}))


def report(results, *, steps, batch, machine_before):
    """The markdown report of every setting's timings."""
    when = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    load = ', '.join(f'{x:.2f}' for x in os.getloadavg())
    ftz = sorted({r['ftz'] for r in results.values()})
    setup = (f'Batch {batch}, Caser({K}), L={L}, d={D}, d\'={D_PRIME}, '
             f'dropout {DROP} (NumPy masks), BPR, Adam, flush-to-zero '
             f'{"on" if ftz == [True] else "not on in every process"}; '
             f'forward + backward + trainer.step, {steps} steps after 3 '
             f"warm-up ones; in `default`, the layouts' steps interleaved, "
             f'the order rotated each step. The other settings time '
             f'`model` alone in a process of their own, one after the '
             f'other; "vs" compares each row with `default, model alone`.')
    base = results['default, model alone']['timings']['model']['median']
    written = (f'Written by `python benchmarks/bench_layouts.py --steps '
               f'{steps} --batch {batch}` on {when}.')
    lines = ['# Layouts of the horizontal convolutions, and MXNet engines',
             '', written, '', f'Machine: {machine_before}', '', setup, '',
             '| setting | layout | step ms (median) | q1-q3 | vs |',
             '| --- | --- | --- | --- | --- |']
    for setting, result in results.items():
        for name, s in result['timings'].items():
            lines.append(f"| {setting} | {name} | {s['median']:.1f} | "
                         f"{s['q1']:.1f}-{s['q3']:.1f} | "
                         f"{s['median'] / base:.2f} |")
    lines += ['', f'Load average at the end: {load}']
    return '\n'.join(lines) + '\n'


def _positive(text):
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be >= 1, got {value}')
    return value


def _parse(argv):
    """The command line, with ``--out`` checked before any work."""
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--steps', type=_positive, default=40,
                   help='timed steps per layout')
    p.add_argument('--batch', type=_positive, default=bench_step.BATCH,
                   help='rows a step')
    p.add_argument('--out', help='also write the report to this new file')
    what = p.add_mutually_exclusive_group()
    what.add_argument('--profile', choices=LAYOUTS,
                      help="instead: MXNet's profile of this layout's step")
    what.add_argument('--ops', action='store_true',
                      help='instead: ns an element of a few operators')
    what.add_argument('--setting', choices=[n for n, _, _ in SETTINGS],
                      help='(internal) be the worker of this setting')
    args = p.parse_args(argv)
    if args.out and os.path.exists(args.out):
        p.error(f'--out {args.out}: the file exists (give a new name)')
    if args.out and not os.path.isdir(os.path.dirname(args.out) or '.'):
        p.error(f'--out {args.out}: no such folder')
    return args


def _print_profile(args):
    """``--profile``: the operators of one layout's step, as a table."""
    rows = profile(args.profile, steps=args.steps, batch=args.batch)
    total = sum(ms for _, _, ms in rows)
    print(f'{args.profile}: operators {total:.1f} ms a step, batch '
          f'{args.batch} ({bench_step.machine()})\n')
    print('| operator | calls a step | ms a step |\n| --- | ---: | ---: |')
    for name, calls, ms in rows:
        print(f'| {name} | {calls:g} | {ms:.2f} |')


def _print_ops(args):
    """``--ops``: ns an element of a few operators, as a table."""
    print(f'Forward + backward, hybridized, median of 30 '
          f'({bench_step.machine()})\n')
    print('| operator | input | ms a call | ns an element |\n'
          '| --- | --- | ---: | ---: |')
    for name, shape, ms, ns in op_costs(batch=args.batch):
        print(f'| {name} | {shape} | {ms:.2f} | {ns:.2f} |')


def _run(cmd, *, env):
    """``cmd``'s standard output; exits with its error if it fails."""
    out = subprocess.run(cmd, capture_output=True, text=True, check=False,
                         env=env)
    if out.returncode:
        sys.exit(f'bench_layouts: {" ".join(cmd[2:])} failed:\n'
                 f'{out.stderr[-2000:]}')
    return out.stdout



def main(argv=None):
    """Parse, then: one mode in this process, or a worker per setting."""
    args = _parse(argv)
    if args.setting or args.profile or args.ops:
        from caser_gluon.fpu import enable_flush_to_zero
        ftz = enable_flush_to_zero()       # before mxnet starts its threads
        if args.setting:
            return _worker(args, ftz)
        return _print_profile(args) if args.profile else _print_ops(args)
    machine_before = bench_step.machine()
    results = {}
    for name, env, _ in SETTINGS:
        cmd = [sys.executable, str(HERE / 'bench_layouts.py'), '--setting',
               name, '--steps', str(args.steps), '--batch', str(args.batch)]
        out = _run(cmd, env={**os.environ, **env})
        results[name] = json.loads(out.strip().splitlines()[-1])
        print(f'{name}: done', file=sys.stderr, flush=True)
    text = report(results, steps=args.steps, batch=args.batch,
                  machine_before=machine_before)
    print(text)
    if args.out:
        with open(args.out, 'x') as f:
            f.write(text)
    return None


if __name__ == '__main__':
    main()
