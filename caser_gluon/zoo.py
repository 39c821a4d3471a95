"""Build a model from its :class:`~caser_gluon.config.ModelConfig`.

The chapter builds ``Caser(10, num_users, num_items, L)`` and initialises
it with ``Normal(0.01)``. :func:`build_model` does the same from a
configuration, for Caser and for the session-based models of the third
exercise (``MODELS``: GRU4Rec, SASRec), which share one interface
(:class:`~caser_gluon.recommender.SequentialRecommender`).
"""
import mxnet as mx

from .model import Caser
from .session_models import GRU4Rec, SASRec

__all__ = ['MODELS', 'build_model']

#: ``--model`` name -> class
MODELS = {'caser': Caser, 'gru4rec': GRU4Rec, 'sasrec': SASRec}


def _caser_kwargs(config):
    return {'L': config.L, 'd': config.d, 'd_prime': config.d_prime,
            'drop_ratio': config.drop_ratio, 'use_user': config.use_user,
            'use_seq': config.use_seq, 'conv': config.conv}


def _session_kwargs(config):
    return {'L': config.L, 'dropout': config.drop_ratio}


#: ``--model`` name -> the constructor's keyword arguments from a config
KWARGS = {'caser': _caser_kwargs, 'gru4rec': _session_kwargs,
          'sasrec': _session_kwargs}


def build_model(config, *, num_users, num_items, devices, hybridize=True):
    """A model initialised as the chapter does (``Normal(0.01)``).

    Parameters
    ----------
    config : ModelConfig
    num_users, num_items : int
    devices : list of mxnet.Context
    hybridize : bool

    Returns
    -------
    SequentialRecommender
    """
    rows = num_items + 1
    width = config.num_factors * (int(config.use_user) + int(config.use_seq))
    if rows * width >= 2 ** 31:
        raise ValueError(f'--num-factors {config.num_factors}: the item '
                         f'tables would hold {rows * width:,} values, more '
                         "than MXNet's limit of 2^31 - 1 per array")
    if config.model not in MODELS:
        raise ValueError(f'--model {config.model}: not available (choose '
                         f'from {", ".join(MODELS)})')
    net = MODELS[config.model](config.num_factors, num_users, num_items,
                               **KWARGS[config.model](config))
    net.initialize(ctx=devices, force_reinit=True, init=mx.init.Normal(0.01))
    if hybridize:
        net.hybridize(static_alloc=True, static_shape=False)
    return net
