"""The Caser model of the D2L chapter "Sequence-aware Recommender Systems".

Caser (Tang & Wang, "Personalized Top-N Sequential Recommendation via
Convolutional Sequence Embedding", WSDM 2018) stacks the embeddings of a
user's last ``L`` items into an ``L x k`` "image" and reads it with two
convolutional networks:

* the vertical convolution, ``d_prime`` filters of shape ``(L, 1)``, a
  weighted sum over the ``L`` items (point-level patterns);
* the horizontal convolutions, ``d`` filters of each height ``h = 1..L`` and
  width ``k``, max-pooled over time (union-level patterns).

A dense layer turns both into the short-term intent ``z`` (``k`` values),
which is joined with the user's general taste ``p_u``; an item's score is
``[z, p_u] . q'_i + b_i``. With ``output='tied'`` (RecBole's Caser) it is
``act(W_2 [z, p_u] + b_2) . q_i`` instead: one more dense layer down to
``k`` values, scored against the input item embeddings ``Q``, no bias.

Unlike the chapter's ``nn.Block``, ``Caser`` is a ``HybridBlock`` (call
``hybridize()`` for a static graph), works with ``d=0`` or ``d_prime=0``
(the chapter's ablation exercise) and with a batch of one row, and scores
any number of items per sequence in one pass.

Two ways to compute the same model (``conv=``):

* ``'dense'`` (default), written for MXNet's CPU, where every operator on
  a ``(batch_size, ...)`` tensor costs far more than its arithmetic:

  - a horizontal filter spans the image's full width ``k``, so it is a
    dense layer applied to each window of ``h`` consecutive rows of the
    flattened ``(batch_size, L * k)`` image; max-pooling over time is an
    element-wise maximum over the ``L - h + 1`` windows;
  - the vertical convolution is one dense layer on the flattened image,
    with the weight ``w_v kron I_k`` (no axis of the batch is swapped);
    without dropout on its features (``drop_ratio=0`` or
    ``dropout_on='image'``) it is linear up to the dense layer after it,
    so the two are multiplied into one ``(k, L * k)`` weight
    (``W_fc,v . vec(w_v E + b_v) = W_eff . vec(E) + b_eff``) and the
    ``d_prime * k`` vertical features are never formed;
  - the dense layer's weight is split by feature block, so the features
    are never concatenated;
  - dropout acts on the ``d_prime * k + d * L`` features, as in the
    chapter and the paper; with ``dropout_on='image'`` it acts once on
    the ``L * k`` image instead;
  - the dropout masks can be given as inputs (:attr:`DenseIntent.
    mask_widths`, :meth:`Caser.draw_masks`): MXNet 1.9's CPU dropout
    draws every element with a Mersenne twister, about a quarter of a
    step, where NumPy draws them ten times faster; the training loop
    passes them with the batch (:class:`~caser_gluon.recommender.
    MaskedScores`), and without them ``Dropout`` draws its own.

  All of it lives in one block, :class:`DenseIntent`.
* ``'fused'``: ``'dense'`` with the horizontal filters and their
  max-pooling computed by one compiled operator
  (:func:`caser_gluon.fused.horizontal_max`, forward and backward in one
  pass over each row; the same parameters, the same dropout masks, joined
  per height); ``'auto'`` (the default) is ``'fused'`` when the operator
  builds and loads and MXNet sees no GPU, else ``'dense'``;
* ``'conv2d'``: the chapter's ``nn.Conv2D`` layers, max-pooling, dropout
  on the concatenated features, and a dense layer.

All give the same scores for the same parameters (dropout aside, which
acts on different tensors while training in ``'conv2d'``);
``tests/test_model.py`` copies one into the other, ``tests/test_fused.py``
compares the fused operator with the dense layers.
``benchmarks/bench_step.py`` and ``benchmarks/bench_layouts.py`` time a
training step of each.
"""
from mxnet import npx
from mxnet.gluon import nn

from .config import ACTIVATIONS, CONV_FORMS
from .config import ModelConfig as DEFAULTS
from .dense_intent import DenseIntent, resolve_conv
from .recommender import SequentialRecommender

__all__ = ['Caser', 'DenseIntent', 'resolve_conv']

npx.set_np()


def _gluon_activation(name):
    """Gluon's ``activation=`` for the named activation (None: identity)."""
    return None if name == 'identity' else name


def _check_arguments(*, num_factors, num_users, num_items, L, d, d_prime,
                     drop_ratio, use_user, use_seq, conv, ac_conv, ac_fc,
                     dropout_on, output):
    """Raise ValueError naming the first bad argument of :class:`Caser`."""
    for name, value in [('num_factors', num_factors), ('L', L),
                        ('num_users', num_users),
                        ('num_items', num_items)]:
        if int(value) != value or value < 1:
            raise ValueError(f'{name} must be a positive integer, '
                             f'got {value!r}')
    if d < 0 or d_prime < 0 or (use_seq and d + d_prime == 0):
        raise ValueError(f'need d >= 0, d_prime >= 0 and one of them '
                         f'> 0, got d={d}, d_prime={d_prime}')
    if conv not in CONV_FORMS:
        raise ValueError(f'conv must be one of {CONV_FORMS}, got {conv!r}')
    if not (use_user or use_seq):
        raise ValueError('use_user and use_seq cannot both be False')
    for name, value in [('ac_conv', ac_conv), ('ac_fc', ac_fc)]:
        if value not in ACTIVATIONS:
            raise ValueError(f'{name} must be one of {ACTIVATIONS}, got '
                             f'{value!r}')
    if dropout_on not in ('features', 'image'):
        raise ValueError(f"dropout_on must be 'features' or 'image', "
                         f'got {dropout_on!r}')
    if output not in ('separate', 'tied') or (output == 'tied'
                                               and not use_seq):
        raise ValueError(f"output must be 'separate' or 'tied' (which "
                         f'needs use_seq), got {output!r}')
    if not 0 <= drop_ratio < 1:
        raise ValueError(f'drop_ratio must be in [0, 1), got '
                         f'{drop_ratio!r}')


class Caser(SequentialRecommender):
    """Convolutional sequence embedding recommender.

    Parameters
    ----------
    num_factors : int
        Embedding size ``k``.
    num_users, num_items : int
    L : int
        Length of the input sequence.
    d : int
        Horizontal filters per height (``0`` removes the horizontal part).
    d_prime : int
        Vertical filters (``0`` removes the vertical part).
    drop_ratio : float
        Dropout rate: on the features before the dense layer
        (``conv='conv2d'``, the chapter's), on the image
        (``conv='dense'``).
    use_user : bool
        Join the user embedding ``P`` to the intent (``False``: sequence
        only, an ablation).
    use_seq : bool
        Use the sequence at all (``False``: user embedding only, BPR-MF
        like, an ablation).
    conv : {'auto', 'fused', 'dense', 'conv2d'}
        How the convolutions are computed (see the module docstring);
        ``'auto'`` becomes ``'fused'`` or ``'dense'`` (:func:`resolve_conv`,
        kept in ``self.conv``).
    output : {'separate', 'tied'}
        ``'separate'``: score with the output embeddings ``Q_prime`` and
        bias ``b`` (the chapter, the paper); ``'tied'``: a dense layer
        ``out_proj`` (``2k -> k``, ``ac_fc``), then the input embeddings
        ``Q``, no bias (RecBole's Caser; needs ``use_seq``).

    Notes
    -----
    Item id ``num_items`` is the padding id of ``SeqDataset``; ``Q`` has a
    row for it, ``Q_prime`` and ``b`` (the output side) do not (nor do the
    scores of a tied output).

    Sub-blocks: ``P``, ``Q``, and ``Q_prime``, ``b`` (separate output) or
    ``out_proj`` (tied output); ``intent`` (a
    :class:`DenseIntent`) with ``conv='dense'`` or ``'fused'``; ``conv_v``,
    ``conv_h``,
    ``dropout`` and ``fc`` with ``conv='conv2d'`` (the others are
    ``None``).
    """

    def __init__(self, num_factors, num_users, num_items, L=DEFAULTS.L,
                 d=DEFAULTS.d, d_prime=DEFAULTS.d_prime,
                 drop_ratio=DEFAULTS.drop_ratio, *, use_user=True,
                 use_seq=True, conv=DEFAULTS.conv, ac_conv=DEFAULTS.ac_conv,
                 ac_fc=DEFAULTS.ac_fc, dropout_on=DEFAULTS.dropout_on,
                 output=DEFAULTS.output, **kwargs):
        super().__init__(**kwargs)
        _check_arguments(
            num_factors=num_factors, num_users=num_users,
            num_items=num_items, L=L, d=d, d_prime=d_prime,
            drop_ratio=drop_ratio, use_user=use_user, use_seq=use_seq,
            conv=conv, ac_conv=ac_conv, ac_fc=ac_fc, dropout_on=dropout_on,
            output=output)
        conv = resolve_conv(conv) if use_seq else conv
        self.num_factors, self.L, self.d, self.d_prime = (
            num_factors, L, d, d_prime)
        self.use_user, self.use_seq, self.conv = use_user, use_seq, conv
        self.P = nn.Embedding(num_users, num_factors) if use_user else None
        self.Q = self.intent = self.conv_v = self.conv_h = self.fc = None
        if use_seq:
            self.Q = nn.Embedding(num_items + 1, num_factors)  # + padding
            acts = {'ac_conv': ac_conv, 'ac_fc': ac_fc}
            if conv in ('dense', 'fused'):
                self.intent = DenseIntent(num_factors, L, d, d_prime,
                                          drop_ratio, dropout_on=dropout_on,
                                          fused=conv == 'fused', **acts)
            else:
                self._init_conv2d(num_factors, L, d, d_prime, drop_ratio,
                                  **acts)
        width = num_factors * (int(use_user) + int(use_seq))
        if output == 'tied':
            self._init_output(num_items, width, tied=self.Q,
                              activation=_gluon_activation(ac_fc))
        else:
            self._init_output(num_items, width)

    def _init_conv2d(self, k, L, d, d_prime, drop_ratio, *, ac_conv, ac_fc):
        """The chapter's layers: ``conv_v``, ``conv_h``, ``dropout``, ``fc``.
        """
        gluon_name = _gluon_activation
        if d_prime:
            self.conv_v = nn.Conv2D(d_prime, (L, 1), in_channels=1)
        self.conv_h = nn.HybridSequential()
        for h in range(1, L + 1) if d else []:
            self.conv_h.add(nn.Conv2D(d, (h, k), in_channels=1,
                                      activation=gluon_name(ac_conv)))
        self.dropout = nn.Dropout(drop_ratio)
        self.fc = nn.Dense(k, activation=gluon_name(ac_fc),
                           in_units=d_prime * k + d * L)

    @property
    def mask_widths(self):
        """Widths of the dropout masks :meth:`encode` takes (see
        :attr:`DenseIntent.mask_widths`); ``()`` with ``conv='conv2d'``,
        whose ``nn.Dropout`` draws its own."""
        return () if self.intent is None else self.intent.mask_widths

    def draw_masks(self, rng, batch_size):
        """:meth:`DenseIntent.draw_masks` (``[]`` without masks)."""
        if not self.mask_widths:
            return []
        return self.intent.draw_masks(rng, batch_size)

    def encode(self, F, user_id, seq, masks=()):
        """The user's representation ``x = [z, p_u]``.

        Parameters
        ----------
        user_id : (batch_size,) int
        seq : (batch_size, L) int
        masks : sequence of (batch_size, width) float
            Dropout masks of :attr:`mask_widths`, or none.

        Returns
        -------
        (batch_size, 2 * num_factors) float, or ``num_factors`` wide in the
        ``use_user=False`` / ``use_seq=False`` ablations.
        """
        parts = []
        if self.use_seq:
            item_embs = self.Q(seq)                         # (b, L, k)
            if self.intent is not None:
                image = F.npx.reshape(item_embs, (-2, -1))  # (b, L * k)
                parts.append(self.intent(image, *masks))    # z: (b, k)
            else:
                parts.append(self._intent_conv2d(F, item_embs))
        if self.use_user:
            parts.append(self.P(user_id))                   # (b, k)
        if len(parts) == 1:
            return parts[0]
        # stacking equal widths is cheaper than concatenating in MXNet 1.9
        return F.npx.reshape(F.np.stack(parts, axis=1), (-2, -1))

    def _intent_conv2d(self, F, item_embs):
        """The chapter's intent ``z`` (b, k) from ``item_embs`` (b, L, k).

        MXNet 1.9's ``np.max`` passes the gradient to every window that
        ties for the maximum (a padded sequence repeats the padding item),
        where ``DenseIntent``'s ``np.maximum`` passes it to one.
        """
        image = F.np.expand_dims(item_embs, 1)          # (b, 1, L, k)
        conv = []
        if self.conv_v is not None:
            # (b, d_prime, 1, k) -> (b, d_prime * k)
            conv.append(F.npx.reshape(self.conv_v(image), (-2, -1)))
        for layer in self.conv_h:
            # (b, d, L - h + 1, 1) -> max-pooling over time -> (b, d)
            conv.append(F.np.max(layer(image), axis=(2, 3)))
        out = conv[0] if len(conv) == 1 else F.np.concatenate(conv, 1)
        return self.fc(self.dropout(out))
