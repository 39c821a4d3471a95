"""Recommendations from a trained run: what the chapter's model suggests.

Not in the chapter, which stops at the hit rate. A run folder keeps what
recommending needs (``config.json``, ``caser.params`` and
``recommend.npz``: each user's last ``L`` items, training items and the
original ids of a ratings file), so the ratings file may change or vanish
afterwards. Every item is ranked for

* a known user: the user's last ``L`` training items are the sequence and
  the user's training items are never recommended;
* an ad-hoc history (a cold user): the sequence alone, with the general
  taste ``p_u`` set to zero, so only the short-term intent ``z`` counts.

Ids on the command line and in the output are the data's own: MovieLens'
1-based ids for ML-100K, the file's ids (numbers or strings) otherwise.
"""
import argparse
import json
import pathlib

import mxnet as mx
import numpy as onp
from mxnet import autograd, ndarray, np

from . import config as config_lib
from .data import read_titles
from .recommender import table_scores
from .runs import RunError, load_params
from .zoo import build_model

__all__ = ['RecommendError', 'add_flags', 'load_run', 'recommend']


class RecommendError(ValueError):
    """A run folder, user or item that cannot be used."""


class _Ids:
    """Translate the data's own ids to 0-based ones and back."""

    def __init__(self, original, count):
        self.original = original            # None: 1-based integers
        self.count = count
        self.index = None if original is None else {
            str(v): i for i, v in enumerate(original.tolist())}

    def to_internal(self, value, what):
        if self.index is not None:
            if str(value) not in self.index:
                raise RecommendError(f'unknown {what} {value!r}: not in the '
                                     "run's data")
            return self.index[str(value)]
        try:
            number = int(value)
        except ValueError:
            number = 0
        if not 1 <= number <= self.count:
            raise RecommendError(f'unknown {what} {value!r}: valid {what}s '
                                 f'are 1..{self.count} (1-based ids)')
        return number - 1

    def to_data(self, i):
        return int(i) + 1 if self.original is None else self.original[
            i].item()


def load_run(run_dir, *, device=None):
    """The trained net and what the run saved for recommending.

    Returns
    -------
    net : SequentialRecommender
    state : dict
        ``config`` (flat), ``test_seq`` (num_users, L), ``seen`` (indptr,
        indices), ``users`` and ``items`` (id translators).
    """
    run_dir = pathlib.Path(run_dir)
    saved = config_lib.read_config_file(run_dir / 'config.json')
    config = config_lib.from_flat(saved)
    path = run_dir / 'recommend.npz'
    try:
        arrays = dict(onp.load(path, allow_pickle=False))
        test_seq, num_items = arrays['test_seq'], int(arrays['num_items'])
    except (OSError, ValueError, KeyError) as err:
        raise RecommendError(f'{path}: unreadable ({err})') from None
    device = device or mx.cpu()
    net = build_model(config.model, num_users=len(test_seq),
                      num_items=num_items, devices=[device], hybridize=False)
    params = run_dir / 'caser.params'
    if not params.is_file():
        raise RecommendError(f'{params}: missing (the run did not finish)')
    try:
        load_params(net, params, device=device)
    except RunError as err:
        raise RecommendError(str(err)) from None
    state = {'config': saved, 'test_seq': test_seq,
             'seen': (arrays['seen_indptr'], arrays['seen_indices']),
             'users': _Ids(arrays.get('user_ids'), len(test_seq)),
             'items': _Ids(arrays.get('item_ids'), num_items)}
    return net, state


def recommend(net, state, *, user=None, items=None, n=10):
    """Top-``n`` items for a known ``user`` or an ad-hoc history ``items``.

    Parameters
    ----------
    net : SequentialRecommender
    state : dict
        What :func:`load_run` returns.
    user : int or str, optional
        The data's id of a user.
    items : list of int or str, optional
        The data's ids of items, oldest first (a cold user).
    n : int

    Returns
    -------
    dict
        ``history`` (the sequence used, oldest first) and ``top`` (``n``
        pairs ``(item id, score)``, best first), in the data's ids.
    """
    if (user is None) == (items is None):
        raise RecommendError('give either a user or a list of items')
    L, pad = state['test_seq'].shape[1], net.num_items
    if user is not None:
        u = state['users'].to_internal(user, 'user')
        seq = state['test_seq'][u]
        indptr, indices = state['seen']
        excluded = indices[indptr[u]:indptr[u + 1]]
    else:
        if not items:
            raise RecommendError('--items needs at least one item id')
        excluded = onp.array([state['items'].to_internal(i, 'item')
                              for i in items])
        seq = onp.array(([pad] * L + excluded.tolist())[-L:], onp.int32)
        u = 0
    ctx = next(iter(net.collect_params().values())).list_ctx()[0]
    with autograd.predict_mode():
        x = net.encode(ndarray, np.array([u], ctx=ctx),
                       np.array(seq[None], ctx=ctx))
        if items is not None and getattr(net, 'use_user', False):
            x[:, -net.num_factors:] = 0   # a cold user has no general taste
        x = net.project(ndarray, x).asnumpy()
    scores = table_scores(x, net.folded_output_table(ctx))[0]
    scores[excluded] = -onp.inf
    top = _top(scores, n)
    to_data = state['items'].to_data
    return {'history': [to_data(i) for i in seq if i != pad],
            'top': [(to_data(i), float(scores[i])) for i in top]}


def _top(scores, n):
    """Indices of the ``n`` best finite scores, best first (ties: id)."""
    finite = onp.flatnonzero(onp.isfinite(scores))
    n = min(n, len(finite))
    part = finite[onp.argpartition(-scores[finite], n - 1)[:n]] if n else \
        finite[:0]
    return part[onp.lexsort((part, -scores[part]))]


def format_recommendations(result, titles=None):
    """Text for a terminal: the history, then the ranked items."""
    def name(i):
        return titles[i - 1] if titles is not None else f'item {i}'
    lines = ['last items:'] + [f'  {i!s:>6}  {name(i)}'
                               for i in result['history']]
    lines.append('recommended:')
    lines += [f'  {r:2d}. {i!s:>6}  {name(i)}  ({s:.3f})'
              for r, (i, s) in enumerate(result['top'], start=1)]
    return '\n'.join(lines)


def run(args):
    """``caser-gluon recommend``: print (or ``--json``) the top items."""
    net, state = load_run(args.run)
    items = None
    if args.items is not None:
        items = [i.strip() for i in args.items.split(',') if i.strip()]
    result = recommend(net, state, user=args.user, items=items, n=args.n)
    if args.json:
        print(json.dumps(result, allow_nan=False))
        return
    titles = None
    if state['config'].get('ratings') is None:
        titles = read_titles(state['config'].get('data_dir'))
    print(format_recommendations(result, titles))


def _positive_int(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f'expected a positive integer, got '
                                         f'{text!r}')
    return int(text)


def add_flags(p):
    """``caser-gluon recommend``'s flags on parser ``p``."""
    p.description = ('Top items from a trained run, for a user or a '
                     "history, in the data's own ids.")
    p.add_argument('--run', required=True,
                   help='run folder written by caser-gluon train')
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument('--user', default=None, help="a user's id")
    who.add_argument('--items', default=None,
                     help='an ad-hoc history, comma-separated item ids, '
                          'oldest first (a cold user)')
    p.add_argument('-n', type=_positive_int, default=10,
                   help='how many items (default: 10)')
    p.add_argument('--json', action='store_true',
                   help='print JSON instead of a table')
    p.set_defaults(handler=run)
    return p
