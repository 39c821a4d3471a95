"""Statistics of the batch streams compared in ``experiments/PAPER.md``.

``python experiments/stream_stats.py`` (about a minute) draws, for the
``paper`` preset's windows on ML-100K, this package's negatives, batch
order and dropout masks with a PCG64 and with an MT19937 generator, and
prints what each stream should show if it is uniform:

* negatives: chi-square per degree of freedom of each user's counts over
  their unseen items (3000 draws per user; about 1), training items drawn
  (0), ``ItemSets.contains`` against the dense mask on every pair;
* the 3 negatives of a window: how often two are equal (1 / unseen items,
  about 0.0007) and their correlation (about 0);
* the order: how often neighbouring windows (mostly of one user) share a
  batch (511 / windows) and users per batch;
* the masks: their mean (0.5) and the largest correlation between mask
  columns and between consecutive rows (about 0).
"""
import numpy as onp

from caser_gluon import train as train_lib
from caser_gluon.config import from_flat, with_preset
from caser_gluon.interactions import sample_negatives
from caser_gluon.model import Caser
from caser_gluon.prepare import load_data

GENERATORS = {'pcg64': onp.random.PCG64, 'mt19937': onp.random.MT19937}


def negatives_check(ds, rng, draws=3000):
    users = onp.repeat(onp.arange(ds.num_users), draws)
    neg = sample_negatives(users, ds.seen, rng)
    counts = onp.zeros((ds.num_users, ds.num_items))
    onp.add.at(counts, (users, neg), 1)
    seen = onp.zeros_like(counts, dtype=bool)
    for u in range(ds.num_users):
        seen[u, ds.seen.row(u)] = True
    expected = draws / (~seen).sum(1, keepdims=True)
    chi = (((counts - expected) ** 2 / expected)[~seen]).sum()
    pairs = onp.divmod(onp.arange(seen.size), ds.num_items)
    return {'chi2 / dof': chi / ((~seen).sum() - ds.num_users),
            'training items drawn': int(counts[seen].sum()),
            'contains == dense mask': bool(
                (ds.seen.contains(*pairs) == seen.ravel()).all())}


def batches_check(ds, rng, net, epochs=5):
    negs, masks, users_per = [], [], []
    for _ in range(epochs):
        for u, _seq, items, *m in train_lib._batches(
                ds, batch_size=512, rng=rng, num_negatives=3, net=net):
            negs.append(items[:, 3:])
            masks.append(onp.concatenate([x > 0 for x in m], axis=1))
            users_per.append(len(onp.unique(u)))
    n = onp.concatenate(negs)
    m = onp.concatenate(masks).astype(float)
    corr = onp.corrcoef(m.T)
    onp.fill_diagonal(corr, 0)
    return {'two negatives equal': (n[:, 0] == n[:, 1]).mean(),
            'corr(neg 1, neg 2)': onp.corrcoef(n[:, 0], n[:, 1])[0, 1],
            'users per batch': onp.mean(users_per[:-1]),
            'mask mean': m.mean(),
            'max |corr| of mask columns': abs(corr).max(),
            'corr of consecutive mask rows': onp.corrcoef(
                m[1:].ravel(), m[:-1].ravel())[0, 1]}


def order_check(ds, rng, epochs=10):
    shares = []
    for _ in range(epochs):
        position = onp.empty(len(ds), int)
        position[rng.permutation(len(ds))] = onp.arange(len(ds))
        batch = position // 512
        shares.append((batch[1:] == batch[:-1]).mean())
    return {'neighbours in one batch': onp.mean(shares),
            'uniform': 511 / len(ds)}


def main():
    config = from_flat(with_preset({'preset': 'paper', 'seed': 0}))
    ds = load_data(config.data, L=5, seed=0)['train_seq_data']
    net = Caser(50, ds.num_users, ds.num_items, L=5, d=16, d_prime=4,
                drop_ratio=0.5)
    for name, bits in GENERATORS.items():
        rng = onp.random.Generator(bits(3))
        for check in (negatives_check(ds, rng), batches_check(ds, rng, net),
                      order_check(ds, rng)):
            for key, value in check.items():
                print(f'{name:8s} {key:32s} {value:.6g}'
                      if not isinstance(value, bool)
                      else f'{name:8s} {key:32s} {value}')


if __name__ == '__main__':
    main()
