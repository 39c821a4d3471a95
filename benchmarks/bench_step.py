"""Benchmark: one training step of Caser, and subnormal floats.

Times, on this machine and in one run, the step of the chapter's training
(batch 4096, ``Caser(10)``, ``L=5``, ``d=16``, ``d'=4``, dropout 0.05, BPR
on one target and one negative scored in one pass, Adam): forward,
backward and ``trainer.step``, for

* ``previous``: the ``conv='dense'`` model before issue 12 (a dense
  layer per window of the sliced image, the vertical filters on the
  swapped axes, features concatenated and dropped out), reproduced below
  by :func:`previous_caser_class`;
* ``new``: today's ``Caser(conv='dense')`` (:class:`caser_gluon.model.
  DenseIntent`) as the loop trains it: the vertical filters as one
  Kronecker dense layer, dropout masks drawn with the batch in NumPy
  (:class:`caser_gluon.recommender.MaskedScores`);
* ``conv2d``: the chapter's ``Conv2D`` layers (``--conv2d``);

each with fresh parameters (``Normal(0.01)``), and with every embedding
and Adam moment refilled with subnormal values (about ``1e-39``) before
each timed step, the state a long run drifts into; each in a process
without and one with :func:`caser_gluon.fpu.enable_flush_to_zero` (which
must run before mxnet is imported, hence the processes). Each process also
times whole ML-100K epochs with ``caser_gluon.train.train_epoch``.

Run ``python benchmarks/bench_step.py`` (about 3 minutes; ``--quick``: a
smoke run). It prints a markdown table and the machine; timings are
medians of interleaved steps, so within one process (one FTZ setting)
all models and states see the same load; the two processes run one after
the other, so compare across them only on a quiet machine.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

__all__ = ['main', 'previous_caser_class', 'worker']

BATCH, USERS, ITEMS, EMB_TINY = 4096, 943, 1682, 1e-39


def previous_caser_class():
    """:class:`PreviousCaser`, defined once mxnet may be imported."""
    from mxnet.gluon import nn

    from caser_gluon.recommender import SequentialRecommender

    class PreviousCaser(SequentialRecommender):
        """``Caser(conv='dense')`` as of commit 2e6d950, for timings only.

        Same model as ``Caser`` (dropout on the features instead of the
        image), computed as it was: ``L (L + 1) / 2`` window slices, a
        swapaxes for the vertical filters, two concatenations.
        """

        def __init__(self, k, num_users, num_items, L=5, d=16, d_prime=4,
                     drop_ratio=0.05, **kwargs):
            super().__init__(**kwargs)
            self.k, self.L = k, L
            self.P = nn.Embedding(num_users, k)
            self.Q = nn.Embedding(num_items + 1, k)
            self.conv_v = nn.Dense(d_prime, in_units=L, flatten=False)
            self.conv_h = nn.HybridSequential()
            for h in range(1, L + 1):
                self.conv_h.add(nn.Dense(d, in_units=h * k))
            self.dropout = nn.Dropout(drop_ratio)
            self.fc = nn.Dense(k, activation='relu',
                               in_units=d_prime * k + d * L)
            self._init_output(num_items, 2 * k)

        def encode(self, F, user_id, seq):
            k, L = self.k, self.L
            item_embs = self.Q(seq)                          # (b, L, k)
            image = F.npx.reshape(item_embs, (-2, -1))       # (b, L k)
            out_v = self.conv_v(F.np.swapaxes(item_embs, 1, 2))
            conv = [F.npx.reshape(out_v, (-2, -1))]          # (b, k d')
            for h, filters in enumerate(self.conv_h, start=1):
                out_h = None
                for t in range(L - h + 1):
                    y = filters(image[:, t * k:(t + h) * k])
                    out_h = y if out_h is None else F.np.maximum(out_h, y)
                conv.append(F.npx.relu(out_h))               # (b, d)
            z = self.fc(self.dropout(F.np.concatenate(conv, 1)))
            return F.np.concatenate([z, self.P(user_id)], 1)

    return PreviousCaser


def build(kind):
    """A hybridized net of ``kind`` and its Adam trainer, as train.py."""
    import mxnet as mx

    from caser_gluon.model import Caser
    from caser_gluon.train import make_trainer, masked_scorer
    if kind == 'previous':
        net = previous_caser_class()(10, USERS, ITEMS)
    else:
        net = Caser(10, USERS, ITEMS, L=5, d=16, d_prime=4,
                    drop_ratio=0.05, conv='dense' if kind == 'new' else kind)
    net.initialize(init=mx.init.Normal(0.01))
    net.hybridize(static_alloc=True, static_shape=False)
    trainer = make_trainer(net, lr=0.04, wd=1e-5, optimizer='adam',
                           kvstore='device')
    return net, trainer, masked_scorer(net)


def step(net, trainer, scorer, users, seqs, items, rng):
    """One BPR step on (b,), (b, L), (b, 2) arrays; waits for the result.

    With a ``scorer`` (``new``), the dropout masks are drawn with NumPy
    as the training loop does (their drawing is timed too).
    """
    import mxnet as mx
    from mxnet import autograd, np, npx
    masks = ([np.array(m) for m in net.draw_masks(rng, len(users))]
             if scorer is not None else [])
    with autograd.record():
        scores = (scorer(users, seqs, items, *masks) if scorer is not None
                  else net(users, seqs, items))                # (b, 2)
        loss = npx.activation(scores[:, 1] - scores[:, 0],
                              act_type='softrelu')
    loss.backward()
    trainer.step(len(users))
    mx.nd.waitall()


def fill_subnormal(net, trainer, rng):
    """Embeddings and Adam's moments to values of magnitude ~1e-39."""
    import mxnet as mx
    from mxnet import np
    for block in (net.P, net.Q, net.Q_prime, net.b):
        w = block.weight
        w.set_data(np.array(rng.choice([-1.0, 1.0], w.shape) * EMB_TINY,
                            dtype='float32'))
    for states in trainer._updaters[0].states.values():
        for state in states:              # (mean, variance) per parameter
            # (legacy NDArrays: assigned from NumPy)
            state[:] = (rng.uniform(0.5, 2, state.shape)
                        * EMB_TINY).astype('float32')
    mx.nd.waitall()


def time_steps(kinds, *, steps, seed=0):
    """Median and quartiles (ms) of steps, all settings interleaved.

    Returns ``{'fresh': {kind: summary}, 'subnormal': {kind: summary}}``;
    each step of one setting is followed by one of every other, so all
    see the same load.
    """
    import numpy as onp
    from mxnet import np
    rng = onp.random.default_rng(seed)
    nets = {(state, kind): build(kind)
            for state in ('fresh', 'subnormal') for kind in kinds}
    times = {key: [] for key in nets}
    for i in range(steps + 3):                        # 3 warm-up steps
        users = np.array(rng.integers(0, USERS, BATCH))
        seqs = np.array(rng.integers(0, ITEMS + 1, (BATCH, 5)))
        items = np.array(rng.integers(0, ITEMS, (BATCH, 2)), dtype='int32')
        for (state, kind), (net, trainer, scorer) in nets.items():
            if state == 'subnormal' and i >= 1:       # Adam states exist
                fill_subnormal(net, trainer, rng)
            start = time.perf_counter()
            step(net, trainer, scorer, users, seqs, items, rng)
            if i >= 3:
                times[state, kind].append(
                    1e3 * (time.perf_counter() - start))
    out = {'fresh': {}, 'subnormal': {}}
    for (state, kind), values in times.items():
        out[state][kind] = summary(values)
    return out


def summary(values):
    """Median, first and third quartile, and count of ``values``."""
    q1, _, q3 = (statistics.quantiles(values, n=4) if len(values) > 1
                 else values * 3)
    return {'median': statistics.median(values), 'q1': q1, 'q3': q3,
            'n': len(values)}


def time_epochs(kinds, *, epochs, seed=0):
    """Seconds of whole ML-100K epochs (``train_epoch``), interleaved."""
    import mxnet as mx
    import numpy as onp

    from caser_gluon import data as data_lib
    from caser_gluon.train import train_epoch
    df, num_users, num_items = data_lib.read_ml100k()
    train_df, _ = data_lib.split_seq_aware(df, num_users, num_items)
    users, items, candidates = data_lib.load_implicit(
        train_df, num_users, num_items)
    dataset = data_lib.SeqDataset(users, items, 5, num_users, num_items,
                                  candidates, seed=seed)
    nets = {kind: build(kind) for kind in kinds}
    times = {kind: [] for kind in kinds}
    rng = onp.random.default_rng(seed)
    for epoch in range(epochs + 1):                   # 1 warm-up epoch
        for kind, (net, trainer, scorer) in nets.items():
            _, seconds = train_epoch(net, dataset, trainer, batch_size=BATCH,
                                     devices=[mx.cpu()], rng=rng, loss='bpr',
                                     scorer=scorer)
            if epoch:
                times[kind].append(seconds)
    return {kind: summary(t) for kind, t in times.items()}


def time_multiply(value, *, repeat=50):
    """Median ms of MXNet's ``a * 0.5`` on 2**20 float32 ``value``s."""
    import mxnet as mx
    from mxnet import np
    a = np.full((1 << 20,), value, dtype='float32')
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        (a * 0.5).wait_to_read()
        times.append(1e3 * (time.perf_counter() - start))
    mx.nd.waitall()
    return statistics.median(times)


def worker(args):
    """Time everything in this process; print one JSON line."""
    from caser_gluon.fpu import enable_flush_to_zero, flush_to_zero_enabled
    enabled = enable_flush_to_zero() if args.ftz == 'on' else False
    import mxnet  # noqa: F401  (after the MXCSR is set: its threads)
    kinds = ['previous', 'new'] + (['conv2d'] if args.conv2d else [])
    result = {'ftz': enabled, 'ftz_in_main_thread': flush_to_zero_enabled(),
              'multiply': {'normal': time_multiply(1e-3),
                           'subnormal': time_multiply(EMB_TINY)},
              **time_steps(kinds, steps=args.steps)}
    if args.epochs:
        result['epoch'] = time_epochs(kinds, epochs=args.epochs)
    print(json.dumps(result))


def machine():
    """lscpu's model name, nproc and the load average, as one line."""
    try:
        lscpu = subprocess.run(['lscpu'], capture_output=True, text=True,
                               check=True).stdout
        model = next(line.split(':', 1)[1].strip()
                     for line in lscpu.splitlines()
                     if line.startswith('Model name'))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = platform.processor() or platform.machine()
    load = ', '.join(f'{x:.2f}' for x in os.getloadavg())
    return (f'{model}, nproc {os.cpu_count()}, load average (1, 5, 15 '
            f'min) {load}, Python {platform.python_version()}, '
            f'OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS", "unset")}')


def table(results):
    """The markdown table of both processes' results."""
    rows = [('| FTZ+DAZ | parameters | model | step ms (median) | '
             'q1-q3 | ML-100K epoch s (median) |'),
            '| --- | --- | --- | --- | --- | --- |']
    for r in results:
        ftz = 'on' if r['ftz'] else 'off'
        for state in ('fresh', 'subnormal'):
            for kind, s in r[state].items():
                epoch = r.get('epoch', {}).get(kind)
                shown = (f"{epoch['median']:.3f}"
                         if epoch and state == 'fresh' else '')
                rows.append(f"| {ftz} | {state} | {kind} | "
                            f"{s['median']:.1f} | {s['q1']:.1f}-"
                            f"{s['q3']:.1f} | {shown} |")
    return '\n'.join(rows)


def main(argv=None):
    """Run one worker process per FTZ setting; print the table."""
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--steps', type=int, default=40,
                   help='timed steps per model and state')
    p.add_argument('--epochs', type=int, default=5,
                   help='timed ML-100K epochs per model (0: none)')
    p.add_argument('--conv2d', action='store_true',
                   help="also time the chapter's Conv2D layers")
    p.add_argument('--quick', action='store_true',
                   help='a smoke run: 5 steps, 2 epochs')
    p.add_argument('--ftz', choices=['on', 'off'],
                   help='(internal) be the worker of this setting')
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.epochs = 5, min(args.epochs, 2)
    if args.ftz:
        return worker(args)
    print(f'Machine: {machine()}', flush=True)
    results = []
    for ftz in ('off', 'on'):
        cmd = [sys.executable, os.path.abspath(__file__), '--ftz', ftz,
               '--steps', str(args.steps), '--epochs', str(args.epochs)]
        cmd += ['--conv2d'] if args.conv2d else []
        out = subprocess.run(cmd, capture_output=True, text=True,
                             check=False)
        if out.returncode:
            sys.exit(f'bench_step: the FTZ {ftz} worker failed:\n'
                     f'{out.stderr[-2000:]}')
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f'\nBatch {BATCH}, Caser(10), L=5, d=16, d\'=4, BPR, Adam; '
          f'steps: forward + backward + trainer.step; "subnormal": '
          f'embeddings and Adam moments refilled with ~{EMB_TINY:g} before '
          f'each step.\n')
    print(table(results))
    for r in results:
        m = r['multiply']
        print(f"\nFTZ+DAZ {'on' if r['ftz'] else 'off'}: MXNet multiplies "
              f"2**20 float32 in {m['normal']:.2f} ms (normal values), "
              f"{m['subnormal']:.2f} ms (subnormal values): the CPU's own "
              f"subnormal penalty.", end='')
    print()
    print(f'\nLoad average at the end: {os.getloadavg()[0]:.2f}')


if __name__ == '__main__':
    main()
