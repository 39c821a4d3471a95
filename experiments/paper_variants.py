"""``caser-gluon train`` with one part swapped, for the paper gap (issue 14).

The experiment of ``experiments/PAPER.md`` ("Fresh seeds"): the `paper`
preset with one ingredient changed per run, to see which, if any, moves
the training loss or HR@50 towards the authors' code::

    VARIANT=mx-dropout python experiments/paper_variants.py \
        --preset paper --epochs 15 --seed 10 --out runs/md-s10

``VARIANT`` is one of

* ``torch-init``: the parameters start from the authors' PyTorch
  initialisation of the same seed, read from ``$TORCH_INIT`` (an ``.npz``
  of their ``state_dict``, written by ``experiments/torch_init_dump.py``
  in the peers' torch environment); their padding row 0 becomes this
  package's last row;
* ``mx-dropout``: MXNet's own dropout inside the compiled model instead of
  the masks drawn with NumPy (``train.masked_scorer`` off);
* ``no-ftz``: flush-to-zero left off (``caser_gluon.fpu``).

(``--conv conv2d``, the chapter's layers with MXNet's dropout, and
``experiments/stream_swap.py``, the authors' batch stream, need no
wrapper.) For measurements only: it patches the package's functions.
"""
import os
import sys

from caser_gluon import fpu

VARIANT = os.environ.get('VARIANT', '')
if VARIANT == 'no-ftz':              # before the cli turns it on
    fpu.enable_flush_to_zero = lambda: False
else:                                # before mxnet and numpy, as the cli
    fpu.enable_flush_to_zero()

import mxnet as mx
import numpy as onp

import caser_gluon.pipeline as pipeline_lib
import caser_gluon.train as train_lib
from caser_gluon.cli import main

_build_model = pipeline_lib.build_model


def _their_rows(table, padded):
    """The authors' item rows in this package's order (their row 0 is
    the padding item; here the padding row, if any, is the last)."""
    return onp.concatenate([table[1:], table[:1]]) if padded else table[1:]


def torch_initialised(config, **kwargs):
    """:func:`build_model`, then the authors' initial parameters."""
    net = _build_model(config, **kwargs)
    z = onp.load(os.environ['TORCH_INIT'])
    intent, L, k = net.intent, config.L, config.num_factors
    values = {net.P.weight: z['user_embeddings.weight'],
              net.Q.weight: _their_rows(z['item_embeddings.weight'], True),
              net.Q_prime.weight: _their_rows(z['W2.weight'], False),
              net.b.weight: _their_rows(z['b2.weight'], False),
              intent.conv_v_weight: z['conv_v.weight'].reshape(-1, L),
              intent.conv_v_bias: z['conv_v.bias'],
              intent.fc_weight: z['fc1.weight'],
              intent.fc_bias: z['fc1.bias']}
    for h in range(1, L + 1):
        weight = z[f'conv_h.{h - 1}.weight']            # (d, 1, h, k)
        values[getattr(intent, f'conv_h{h}_weight')] = weight.reshape(
            len(weight), h * k)
        values[getattr(intent, f'conv_h{h}_bias')] = z[f'conv_h.{h - 1}.bias']
    assert len(values) == len(list(net.collect_params().values()))
    for param, value in values.items():
        assert param.shape == value.shape, (param.name, value.shape)
        param.set_data(mx.np.array(value.astype(onp.float32)))
    return net


if __name__ == '__main__':
    if VARIANT == 'torch-init':
        pipeline_lib.build_model = torch_initialised
    elif VARIANT == 'mx-dropout':
        train_lib.masked_scorer = lambda net: None
    elif VARIANT != 'no-ftz':
        sys.exit(f'VARIANT={VARIANT!r}: torch-init, mx-dropout or no-ftz')
    print(f'variant: {VARIANT}', file=sys.stderr)
    main(['train', *sys.argv[1:]])
