"""Build a model from its :class:`~caser_gluon.config.ModelConfig`.

The chapter builds ``Caser(10, num_users, num_items, L)`` and initialises
it with ``Normal(0.01)``. :func:`build_model` does the same from a
configuration, for Caser and for the session-based models of the third
exercise (``MODELS``: GRU4Rec, SASRec), which share one interface
(:class:`~caser_gluon.recommender.SequentialRecommender`).
"""
import mxnet as mx
import numpy as onp

from .model import Caser
from .session_models import GRU4Rec, SASRec

__all__ = ['MODELS', 'build_model']

#: ``--model`` name -> class
MODELS = {'caser': Caser, 'gru4rec': GRU4Rec, 'sasrec': SASRec}


def _caser_kwargs(config):
    return {'L': config.L, 'd': config.d, 'd_prime': config.d_prime,
            'drop_ratio': config.drop_ratio, 'use_user': config.use_user,
            'use_seq': config.use_seq, 'conv': config.conv,
            'ac_conv': config.ac_conv, 'ac_fc': config.ac_fc,
            'dropout_on': config.dropout_on}


def _session_kwargs(config):
    return {'L': config.L, 'dropout': config.drop_ratio}


#: ``--model`` name -> initialiser: the chapter's for Caser, Xavier (what
#: they were tuned with, experiments/SESSIONS.md) for the session models
INITS = {'caser': mx.init.Normal(0.01), 'gru4rec': mx.init.Xavier(),
         'sasrec': mx.init.Xavier()}
#: ``--model`` name -> the constructor's keyword arguments from a config
KWARGS = {'caser': _caser_kwargs, 'gru4rec': _session_kwargs,
          'sasrec': _session_kwargs}


def _paper_init(net, k):
    """The authors' initialisation (caser_pytorch), in place.

    Input embeddings ``Normal(1 / k)``, output embedding ``Normal(1 /
    2k)``, output bias zero, and every other weight and bias
    ``Uniform(+-1 / sqrt(fan_in))`` (PyTorch's default for its layers).
    """
    special = {'P': mx.init.Normal(1.0 / k), 'Q': mx.init.Normal(1.0 / k),
               'Q_prime': mx.init.Normal(0.5 / k), 'b': mx.init.Zero()}
    done = set()
    for name, init in special.items():
        block = getattr(net, name, None)
        if block is not None:
            block.weight.initialize(init=init, force_reinit=True,
                                    ctx=block.weight.list_ctx())
            done.add(block.weight.name)
    params = net.collect_params()
    for name, param in params.items():
        if name in done:
            continue
        weight = params[name[:-len('bias')] + 'weight'] if \
            name.endswith('bias') else param
        fan_in = int(onp.prod(weight.shape[1:]))
        param.initialize(init=mx.init.Uniform(fan_in ** -0.5),
                         force_reinit=True, ctx=param.list_ctx())


def build_model(config, *, num_users, num_items, devices, hybridize=True):
    """A model initialised as the chapter does (``Normal(0.01)``, ``INITS``).

    ``config.init = 'paper'`` initialises it as the authors' code does.

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
    net.initialize(ctx=devices, force_reinit=True, init=INITS[config.model])
    if config.init == 'paper':
        _paper_init(net, config.num_factors)
    if hybridize:
        net.hybridize(static_alloc=True, static_shape=False)
    return net
