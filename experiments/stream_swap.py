"""``caser-gluon train`` with the batch stream drawn another way (issue 14).

The experiment of ``experiments/PAPER.md``: the same model, loss,
optimiser and data, with the random stream that orders the windows, draws
the negatives and the dropout masks changed, one way per run::

    STREAM=authors python experiments/stream_swap.py --preset paper --seed 3

``STREAM`` is one of

* ``package``: this package's stream, a fresh PCG64 generator per
  epoch seeded by ``(seed, epoch)`` (``caser_gluon.runtime.seed_epoch``);
* ``pcg-run``: one PCG64 generator for the run;
* ``mt-epoch``: a fresh MT19937 generator per epoch, seeded by ``(seed,
  epoch)``;
* ``mt-run``: one MT19937 generator for the run;
* ``authors``: caser_pytorch's: NumPy's global generator (seeded once by
  ``set_seed``) shuffles the windows each epoch and draws 3 negatives per
  window from each user's list of unseen items, all before the epoch's
  first batch; the dropout masks from the run's stream;
* ``authors-pcg``: as ``authors``, with every draw from a PCG64 generator
  per epoch.

It replaces ``caser_gluon.train._batches`` and is for measurements only:
the candidate lists of ``authors`` take ``num_users x num_items`` memory.
"""
import os
import sys

import numpy as onp

import caser_gluon.train as train_lib
from caser_gluon.cli import main

STREAM = os.environ.get('STREAM', 'package')
SEED = None
_batches, _state = train_lib._batches, {}


def _candidates(dataset):
    """Each user's unseen items, flat, with offsets and counts."""
    if 'flat' not in _state:
        lists = []
        for u in range(dataset.num_users):
            seen = onp.zeros(dataset.num_items, bool)
            seen[dataset.seen.row(u)] = True
            lists.append(onp.flatnonzero(~seen))
        counts = onp.array([len(x) for x in lists])
        _state.update(flat=onp.concatenate(lists), counts=counts,
                      offsets=onp.r_[0, onp.cumsum(counts)[:-1]])
    return _state['flat'], _state['offsets'], _state['counts']


def _authors(dataset, *, batch_size, rng, num_negatives, net=None,
             draw=None):
    flat, offsets, counts = _candidates(dataset)
    draw = draw or onp.random          # the global generator, seeded once
    order = onp.arange(len(dataset))
    draw.shuffle(order)
    users = dataset.seq_users[order]
    u = onp.repeat(users, num_negatives)
    high = counts[u]
    pick = (draw.integers(0, high) if hasattr(draw, 'integers')
            else draw.randint(0, high))
    negatives = flat[offsets[u] + pick].reshape(len(order), num_negatives)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        items = onp.concatenate([dataset.seq_tgt[idx],
                                 negatives[start:start + batch_size]], 1)
        masks = net.draw_masks(rng, len(idx)) if net is not None else []
        yield (users[start:start + batch_size], dataset.seq_items[idx],
               items.astype(onp.int32), *masks)


def _generator(kind, epoch):
    bits = onp.random.PCG64 if kind.startswith('pcg') else onp.random.MT19937
    if kind.endswith('run'):
        if 'run' not in _state:
            _state['run'] = onp.random.Generator(bits(SEED))
        return _state['run']
    return onp.random.Generator(bits(onp.random.SeedSequence([SEED, epoch])))


def _swapped(dataset, *, rng, **kwargs):
    _state['epoch'] = _state.get('epoch', 0) + 1
    if STREAM == 'authors':
        return _authors(dataset, rng=rng, **kwargs)
    if STREAM == 'authors-pcg':
        g = _generator('pcg-epoch', _state['epoch'])
        return _authors(dataset, rng=g, draw=g, **kwargs)
    return _batches(dataset, rng=_generator(STREAM, _state['epoch']),
                    **kwargs)


if __name__ == '__main__':
    args = sys.argv[1:]
    SEED = int(args[args.index('--seed') + 1]) if '--seed' in args else 0
    if STREAM != 'package':
        train_lib._batches = _swapped
    print(f'stream: {STREAM}', file=sys.stderr)
    main(['train', *args])
