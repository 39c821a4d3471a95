"""Recommendations from a trained run: what the chapter's model suggests.

Not in the chapter, which stops at the hit rate. Given a run folder
(``config.json`` and ``caser.params``, as ``make train`` writes them), this
rebuilds ``Caser`` and the data, and ranks every movie for

* a known user: the user's last ``L`` training movies are the sequence and
  the user's training movies are never recommended;
* an ad-hoc history (a cold user): the sequence alone, with the general
  taste ``p_u`` set to zero, so only the short-term intent ``z`` counts.

Ids on the command line are MovieLens' own, 1-based, as in ``u.data``.
"""
import json
import pathlib

import mxnet as mx
import numpy as onp
from mxnet import autograd, np

from . import data as data_lib
from . import train as train_lib

__all__ = ['RecommendError', 'format_recommendations', 'load_run', 'recommend']


class RecommendError(ValueError):
    """A run folder, user or item that cannot be used."""


def load_run(run_dir, *, device=None):
    """The trained net, the run's configuration and its data.

    Returns
    -------
    net : Caser
    config : dict
    chapter : dict
        As :func:`caser_gluon.train.load_chapter_data` returns it.
    """
    run_dir = pathlib.Path(run_dir)
    config_path, params = run_dir / 'config.json', run_dir / 'caser.params'
    for path in (config_path, params):
        if not path.is_file():
            raise RecommendError(f'{path}: missing; is {run_dir} a run '
                                 'folder written by make train?')
    config = json.loads(config_path.read_text())
    device = device or mx.cpu()
    chapter = train_lib.load_chapter_data(
        L=config['L'], data_dir=config.get('data_dir'),
        targets=config.get('targets', 1), ratings=config.get('ratings'),
        min_rating=config.get('min_rating'), k_core=config.get('k_core', 0))
    net = train_lib.build_net(
        num_users=chapter['num_users'], num_items=chapter['num_items'],
        devices=[device], num_factors=config['num_factors'], L=config['L'],
        d=config['d'], d_prime=config['d_prime'],
        drop_ratio=config['drop_ratio'], conv=config.get('conv', 'dense'),
        hybridize=False)
    net.load_parameters(str(params), ctx=device)
    return net, config, chapter


def _check_id(value, count, what):
    if not 1 <= value <= count:
        raise RecommendError(f'unknown {what} {value}: valid {what}s are '
                             f'1..{count} (MovieLens ids, 1-based)')
    return value - 1


def recommend(net, chapter, *, user=None, items=None, n=10):
    """Top-``n`` items for a known ``user`` or an ad-hoc history ``items``.

    Parameters
    ----------
    net : Caser
    chapter : dict
        The run's data (:func:`load_run`).
    user : int, optional
        1-based user id.
    items : list of int, optional
        1-based item ids, oldest first (a cold user).
    n : int

    Returns
    -------
    dict
        ``history`` (the 1-based ids of the sequence used, oldest first)
        and ``top`` (``n`` pairs ``(item id, score)``, best first, 1-based
        ids).
    """
    if (user is None) == (items is None):
        raise RecommendError('give either a user or a list of items')
    dataset = chapter['train_seq_data']
    num_items, L = chapter['num_items'], dataset.L
    if user is not None:
        u = _check_id(user, chapter['num_users'], 'user')
        seq = dataset.test_seq[u]
        excluded = dataset.seen[u].copy()
    else:
        if not items:
            raise RecommendError('--items needs at least one item id')
        ids = [_check_id(i, num_items, 'item') for i in items]
        seq = onp.array(([dataset.pad] * L + ids)[-L:], dtype=onp.int32)
        excluded = onp.zeros(num_items, dtype=bool)
        excluded[ids] = True
        u = 0
    ctx = net.Q_prime.weight.list_ctx()[0]
    with autograd.predict_mode():
        x = net.user_vectors(np.array([u], ctx=ctx),
                             np.array(seq[None], ctx=ctx)).asnumpy()[0]
    if items is not None and net.use_user:
        x[-net.num_factors:] = 0        # a cold user has no general taste
    scores = (net.Q_prime.weight.data(ctx).asnumpy() @ x
              + net.b.weight.data(ctx).asnumpy()[:, 0])
    scores[excluded] = -onp.inf
    top = onp.argsort(-scores, kind='stable')[:n]
    return {'history': [int(i) + 1 for i in seq if i != dataset.pad],
            'top': [(int(i) + 1, float(scores[i])) for i in top]}


def format_recommendations(result, titles=None):
    """Text for a terminal: the history, then the ranked items."""
    def name(i):
        return titles[i - 1] if titles is not None else f'item {i}'
    lines = ['last movies:'] + [f'  {i:5d}  {name(i)}'
                                for i in result['history']]
    lines.append('recommended:')
    lines += [f'  {r:2d}. {i:5d}  {name(i)}  ({s:.3f})'
              for r, (i, s) in enumerate(result['top'], start=1)]
    return '\n'.join(lines)


def main(args):
    """``caser-gluon recommend``: print (or ``--json``) the top items."""
    net, config, chapter = load_run(args.run)
    items = None
    if args.items is not None:
        try:
            items = [int(i) for i in args.items.split(',') if i.strip()]
        except ValueError:
            raise RecommendError(f'--items {args.items!r}: expected '
                                 'comma-separated integers') from None
    result = recommend(net, chapter, user=args.user, items=items, n=args.n)
    if args.json:
        print(json.dumps(result))
        return
    titles = None
    if config.get('ratings') is None:
        titles = data_lib.read_titles(config.get('data_dir'))
    print(format_recommendations(result, titles))
