"""Build a model from its :class:`~caser_gluon.config.ModelConfig`.

The chapter builds ``Caser(10, num_users, num_items, L)`` and initialises
it with ``Normal(0.01)``. :func:`build_model` does the same from a
configuration, for Caser and for the session-based models of the third
exercise (``MODELS``: GRU4Rec, SASRec), which share one interface
(:class:`~caser_gluon.recommender.SequentialRecommender`).
"""
import mxnet as mx
import numpy as onp

from .model import Caser, resolve_conv
from .session_models import GRU4Rec, SASRec

__all__ = ['MODELS', 'build_model']

#: ``--model`` name -> class
MODELS = {'caser': Caser, 'gru4rec': GRU4Rec, 'sasrec': SASRec}


def _caser_kwargs(config, devices):
    conv = config.conv                    # 'auto': the fused form on CPUs
    if conv == 'auto' and any(d.device_type != 'cpu' for d in devices):
        conv = 'dense'
    return {'L': config.L, 'd': config.d, 'd_prime': config.d_prime,
            'drop_ratio': config.drop_ratio, 'use_user': config.use_user,
            'use_seq': config.use_seq, 'conv': resolve_conv(conv),
            'ac_conv': config.ac_conv, 'ac_fc': config.ac_fc,
            'dropout_on': config.dropout_on, 'output': config.output}


def _session_kwargs(config, devices):
    return {'L': config.L, 'dropout': config.drop_ratio}


#: ``--model`` name -> initialiser: the chapter's for Caser, Xavier (what
#: they were tuned with, experiments/SESSIONS.md) for the session models
INITS = {'caser': mx.init.Normal(0.01), 'gru4rec': mx.init.Xavier(),
         'sasrec': mx.init.Xavier()}
#: ``--model`` name -> the constructor's keyword arguments from a config
#: and the devices
KWARGS = {'caser': _caser_kwargs, 'gru4rec': _session_kwargs,
          'sasrec': _session_kwargs}


def _paper_init(net, k, *, output_scale=0.5):
    """The authors' initialisation (caser_pytorch), in place.

    Input embeddings ``Normal(1 / k)``, output embedding ``Normal(1 /
    2k)`` (``output_scale / k``), output bias zero, and every other weight
    and bias ``Uniform(+-1 / sqrt(fan_in))`` (PyTorch's default for its
    layers).
    """
    special = {'P': mx.init.Normal(1.0 / k), 'Q': mx.init.Normal(1.0 / k),
               'Q_prime': mx.init.Normal(output_scale / k),
               'b': mx.init.Zero()}
    done = set()
    for name, init in special.items():
        block = getattr(net, name, None)
        if block is not None:
            _reinit(block.weight, init)
            done.add(block.weight.name)
    params = net.collect_params()
    for name, param in params.items():
        if name in done:
            continue
        weight = params[name[:-len('bias')] + 'weight'] if \
            name.endswith('bias') else param
        fan_in = int(onp.prod(weight.shape[1:]))
        _reinit(param, mx.init.Uniform(fan_in ** -0.5))


def _reinit(param, init):
    param.initialize(init=init, force_reinit=True, ctx=param.list_ctx())


def _recbole_init(net, k):
    """RecBole's initialisation of its Caser, in place.

    Every embedding ``Normal(1 / k)``, output bias zero, the dense layers
    (``fc``, ``out_proj``) Xavier-normal (``std = sqrt(2 / (fan_in +
    fan_out))``) with zero bias, and the convolutions as
    :func:`_paper_init` (PyTorch's default).
    """
    _paper_init(net, k, output_scale=1.0)
    xavier = mx.init.Xavier(rnd_type='gaussian', factor_type='avg',
                            magnitude=1)
    intent = getattr(net, 'intent', None)
    dense = [getattr(net, name, None) for name in ('fc', 'out_proj')]
    pairs = [(b.weight, b.bias) for b in dense if b is not None]
    if intent is not None:
        pairs.append((intent.fc_weight, intent.fc_bias))
    for weight, bias in pairs:
        _reinit(weight, xavier)
        _reinit(bias, mx.init.Zero())


def build_model(config, *, num_users, num_items, devices, hybridize=True):
    """A model initialised as the chapter does (``Normal(0.01)``, ``INITS``).

    ``config.init = 'paper'`` initialises it as the authors' code does,
    ``'recbole'`` as RecBole's Caser.

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
                               **KWARGS[config.model](config, devices))
    net.initialize(ctx=devices, force_reinit=True, init=INITS[config.model])
    if config.init == 'paper':
        _paper_init(net, config.num_factors)
    elif config.init == 'recbole':
        _recbole_init(net, config.num_factors)
    if hybridize:
        net.hybridize(static_alloc=True, static_shape=False)
    return net
