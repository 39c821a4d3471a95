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
import numpy as onp
from mxnet import npx
from mxnet.gluon import nn

from . import fused
from .config import ACTIVATIONS, CONV_FORMS
from .config import ModelConfig as DEFAULTS
from .recommender import SequentialRecommender

__all__ = ['Caser', 'DenseIntent', 'resolve_conv']

npx.set_np()


def resolve_conv(conv):
    """``conv`` with ``'auto'`` replaced by ``'fused'`` or ``'dense'``.

    Raises
    ------
    ValueError
        For ``'fused'`` when the operator cannot be loaded (and why).
    """
    if conv == 'auto':
        return 'fused' if fused.available() else 'dense'
    if conv == 'fused' and not fused.load():
        raise ValueError(f"conv='fused': the compiled operator is not "
                         f'available ({fused.unavailable_reason()}); use '
                         f"conv='dense'")
    return conv


def _activate(F, x, name):
    """``x`` through the named activation (the authors' choices)."""
    if name == 'identity':
        return x
    return F.npx.activation(x, act_type=name)


def _gluon_activation(name):
    """Gluon's ``activation=`` for the named activation (None: identity)."""
    return None if name == 'identity' else name


class DenseIntent(nn.HybridBlock):
    """Caser's convolutions and dense layer, computed as dense layers.

    Maps the flattened image ``vec(E)`` (``E = Q(seq)``, ``L x k``) to the
    chapter's intent ``z = relu(W_fc [vertical, horizontal] + b_fc)``,
    computed as the module docstring says: the vertical part folded into
    the dense layer, the dense layer split by block, dropout on the
    image.

    Parameters
    ----------
    num_factors : int
        ``k``.
    L, d, d_prime, drop_ratio
        As in :class:`Caser`.
    fused : bool
        Compute the horizontal filters and their maxima with
        :func:`caser_gluon.fused.horizontal_max` (load it first).

    Notes
    -----
    Parameters, in the chapter's ``Conv2D`` layout up to reshapes:

    * ``conv_v_weight`` (d_prime, L), ``conv_v_bias`` (d_prime,);
    * ``conv_h{h}_weight`` (d, h * k), ``conv_h{h}_bias`` (d,) for each
      height ``h = 1..L``;
    * ``fc_weight`` (k, d_prime * k + L * d), ``fc_bias`` (k,): columns
      ``c * k + j`` read vertical filter ``c`` at column ``j`` of the
      image, then ``d`` columns per height.
    """

    def __init__(self, num_factors, L, d, d_prime, drop_ratio, *,
                 ac_conv='relu', ac_fc='relu', dropout_on='features',
                 fused=False, **kwargs):
        super().__init__(**kwargs)
        k = num_factors
        self.num_factors, self.L, self.d, self.d_prime = k, L, d, d_prime
        self.drop_ratio, self.dropout_on = drop_ratio, dropout_on
        self.fused = bool(fused and d)
        self.ac_conv, self.ac_fc = ac_conv, ac_fc
        get = self.params.get
        if d_prime:
            self.conv_v_weight = get('conv_v_weight', shape=(d_prime, L))
            self.conv_v_bias = get('conv_v_bias', shape=(d_prime,),
                                   init='zeros')
        for h in range(1, L + 1) if d else []:
            setattr(self, f'conv_h{h}_weight',
                    get(f'conv_h{h}_weight', shape=(d, h * k)))
            setattr(self, f'conv_h{h}_bias',
                    get(f'conv_h{h}_bias', shape=(d,), init='zeros'))
        self.fc_weight = get('fc_weight', shape=(k, d_prime * k + d * L))
        self.fc_bias = get('fc_bias', shape=(k,), init='zeros')

    @property
    def mask_widths(self):
        """Widths of the dropout masks :meth:`hybrid_forward` takes.

        ``()`` without dropout; ``(L * k,)`` with ``dropout_on='image'``;
        else the features' blocks: ``d_prime * k`` vertical features (if
        any), then ``d`` per height (if any).
        """
        L, d = self.L, self.d
        widths = self._drawn_widths()
        if self.fused and widths and self.dropout_on == 'features':
            return widths[:-L] + (L * d,)       # the heights' masks joined
        return widths

    def _drawn_widths(self):
        """Widths of the masks as drawn: one per height (fused or not)."""
        k, L, d, d_prime = self.num_factors, self.L, self.d, self.d_prime
        if not self.drop_ratio:
            return ()
        if self.dropout_on == 'image':
            return (L * k,)
        return (d_prime * k,) * bool(d_prime) + (d,) * (L if d else 0)

    def draw_masks(self, rng, batch_size):
        """Dropout masks for one batch, drawn with NumPy.

        MXNet 1.9's CPU dropout draws each element with a Mersenne
        twister, about 10 ns each (a quarter of the chapter's step at
        batch 4096); NumPy draws 16-bit integers ten times faster. An
        element is dropped when its integer is below ``t = round(p *
        2^16)``, so the rate is ``drop_ratio`` rounded to a multiple of
        ``2^-16``, and kept elements are scaled by ``2^16 / (2^16 - t)``
        (their mean stays exactly 1, as with ``Dropout``).

        Parameters
        ----------
        rng : numpy.random.Generator
        batch_size : int

        Returns
        -------
        list of (batch_size, width) float32 numpy.ndarray
            One per :attr:`mask_widths`: ``0`` (dropped) or the scale. The
            fused form draws the same masks as the dense one and joins the
            heights' (the same dropout, draw for draw).
        """
        levels = 1 << 16
        t = round(self.drop_ratio * levels)
        scale = onp.float32(levels / (levels - t))
        masks = [(rng.integers(0, levels, (batch_size, w), dtype=onp.uint16)
                  >= t) * scale for w in self._drawn_widths()]
        if len(masks) > len(self.mask_widths):
            L = self.L
            masks = masks[:-L] + [onp.concatenate(masks[-L:], axis=1)]
        return masks

    def hybrid_forward(self, F, image, *masks, fc_weight, fc_bias, **params):
        """The intent of each row.

        Parameters
        ----------
        image : (batch_size, L * k) float
            The ``L`` item embeddings of each row, oldest first.
        *masks : (batch_size, width) float, optional
            Dropout masks of :attr:`mask_widths`, e.g. from
            :meth:`draw_masks`; none: MXNet's dropout draws them (while
            training).

        Returns
        -------
        (batch_size, k) float
        """
        k, L, d, d_prime = self.num_factors, self.L, self.d, self.d_prime
        masks = list(masks)

        def drop(x):                 # x times the next mask, or Dropout
            if masks:
                return x * masks.pop(0)
            return F.npx.dropout(x, p=self.drop_ratio)

        on_features = self.drop_ratio and self.dropout_on == 'features'
        if self.drop_ratio and not on_features:
            image = drop(image)
        pre = None                               # z before relu: (b, k)
        if d_prime and on_features:
            v = drop(self._vertical_features(F, image, params))
            pre = F.npx.fully_connected(v, fc_weight[:, :d_prime * k],
                                        fc_bias, num_hidden=k)
        elif d_prime:
            # W_eff[i, l * k + j] = sum_c W_fc[i, c * k + j] w_v[c, l]
            w_fc = F.np.reshape(fc_weight[:, :d_prime * k], (k, d_prime, k))
            w_eff = F.np.einsum('icj,cl->ilj', w_fc,
                                params['conv_v_weight'])
            b_eff = fc_bias + F.np.dot(w_fc.sum(axis=2),
                                       params['conv_v_bias'])
            pre = F.npx.fully_connected(
                image, F.np.reshape(w_eff, (k, L * k)), b_eff,
                num_hidden=k)
        if self.fused:
            pre = self._fused_horizontal(F, image, pre, drop, fc_weight,
                                         fc_bias, params)
        for h in range(1, L + 1) if d and not self.fused else []:
            weight = params[f'conv_h{h}_weight']         # (d, h * k)
            bias = params[f'conv_h{h}_bias']
            pooled = None                # max over the windows: (b, d)
            for t in range(L - h + 1):
                window = image if h == L else image[:, t * k:(t + h) * k]
                y = F.npx.fully_connected(window, weight, bias, num_hidden=d)
                pooled = y if pooled is None else F.np.maximum(pooled, y)
            start = d_prime * k + (h - 1) * d      # this height's columns
            z_h = _activate(F, pooled, self.ac_conv)  # height h's features
            if on_features:
                z_h = drop(z_h)
            w_fc = fc_weight[:, start:start + d]
            if pre is None:
                pre = F.npx.fully_connected(z_h, w_fc, fc_bias, num_hidden=k)
            else:
                pre = pre + F.npx.fully_connected(z_h, w_fc, None,
                                                  no_bias=True, num_hidden=k)
        return _activate(F, pre, self.ac_fc)

    def _fused_horizontal(self, F, image, pre, drop, fc_weight, fc_bias,
                          params):
        """``pre`` plus the dense layer over the horizontal features, with
        the filters and maxima of every height in one fused operator.

        ``drop``: ``hybrid_forward``'s (the next mask, or ``Dropout``).
        """
        k, L, d_prime = self.num_factors, self.L, self.d_prime
        heights = range(1, L + 1)
        pooled = fused.horizontal_max(                 # (b, L * d)
            F, image, [params[f'conv_h{h}_weight'] for h in heights],
            [params[f'conv_h{h}_bias'] for h in heights])
        z = _activate(F, pooled, self.ac_conv)
        if self.drop_ratio and self.dropout_on == 'features':
            z = drop(z)
        w_fc = fc_weight[:, d_prime * k:]
        if pre is None:
            return F.npx.fully_connected(z, w_fc, fc_bias, num_hidden=k)
        return pre + F.npx.fully_connected(z, w_fc, None, no_bias=True,
                                           num_hidden=k)

    def _vertical_features(self, F, image, params):
        """The ``d_prime * k`` vertical features, as the chapter lays them.

        Column ``c * k + j`` is filter ``c`` at column ``j`` of the image:
        ``sum_l w_v[c, l] E[l, j] + b_v[c]``, one dense layer on the
        flattened image with the weight ``w_v kron I_k`` (``(d' k, L k)``:
        ``W[c k + j, l k + j'] = w_v[c, l]`` if ``j = j'``, else 0), so
        that no axis of the batch is swapped.
        """
        k, L, d_prime = self.num_factors, self.L, self.d_prime
        w_v = params['conv_v_weight']                        # (d', L)
        expand = F.np.expand_dims
        kron = expand(expand(w_v, 1), 3) * expand(expand(F.np.eye(k), 0), 2)
        return F.npx.fully_connected(
            image, F.np.reshape(kron, (d_prime * k, L * k)),
            F.np.repeat(params['conv_v_bias'], k), num_hidden=d_prime * k)


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
