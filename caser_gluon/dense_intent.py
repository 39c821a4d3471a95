"""Caser's convolutions as dense layers: the model's fast forms.

Not a section of the chapter: how :class:`~caser_gluon.model.Caser`
computes its convolutions when ``conv`` is ``'dense'`` or ``'fused'`` (the
module docstring of :mod:`caser_gluon.model` lists the forms). A
horizontal filter spans the image's full width, so it is a dense layer
over each window of rows of the flattened image, max-pooled by element-wise
maxima; the vertical filters are one dense layer with a Kronecker weight;
the dense layer after them is split by feature block; dropout masks may be
given as inputs. With ``fused``, the horizontal filters and their maxima
are one compiled operator (:mod:`caser_gluon.fused`).
"""
import numpy as onp
from mxnet import npx
from mxnet.gluon import nn

from . import fused

__all__ = ['DenseIntent', 'activate', 'resolve_conv']

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


def activate(F, x, name):
    """``x`` through the named activation (the authors' choices)."""
    if name == 'identity':
        return x
    return F.npx.activation(x, act_type=name)


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
            z_h = activate(F, pooled, self.ac_conv)  # height h's features
            if on_features:
                z_h = drop(z_h)
            w_fc = fc_weight[:, start:start + d]
            if pre is None:
                pre = F.npx.fully_connected(z_h, w_fc, fc_bias, num_hidden=k)
            else:
                pre = pre + F.npx.fully_connected(z_h, w_fc, None,
                                                  no_bias=True, num_hidden=k)
        return activate(F, pre, self.ac_fc)

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
        z = activate(F, pooled, self.ac_conv)
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
