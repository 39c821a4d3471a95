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
``[z, p_u] . q'_i + b_i``.

Unlike the chapter's ``nn.Block``, ``Caser`` is a ``HybridBlock`` (call
``hybridize()`` for a static graph), works with ``d=0`` or ``d_prime=0``
(the chapter's ablation exercise) and with a batch of one row, and scores
any number of items per sequence in one pass.

Two ways to compute the same convolutions (``conv=``):

* ``'dense'`` (default): a filter that spans the image's full width ``k``
  is a dense layer applied to each window of ``h`` consecutive rows, and a
  vertical filter is a dense layer over the ``L`` rows of each column. The
  max-pooling over time is an element-wise maximum over the windows. On
  MXNet's CPU this is about four times faster than ``Conv2D`` on these
  small images (``make bench``).
* ``'conv2d'``: the chapter's ``nn.Conv2D`` layers and max-pooling.

Both give the same scores for the same filters (``tests/test_model.py``
copies one into the other).
"""
from mxnet import npx
from mxnet.gluon import nn

from .recommender import SequentialRecommender

__all__ = ['Caser']

npx.set_np()


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
        Dropout before the dense layer.
    use_user : bool
        Join the user embedding ``P`` to the intent (``False``: sequence
        only, an ablation).
    use_seq : bool
        Use the sequence at all (``False``: user embedding only, BPR-MF
        like, an ablation).
    conv : {'dense', 'conv2d'}
        How the convolutions are computed (see the module docstring).

    Notes
    -----
    Item id ``num_items`` is the padding id of ``SeqDataset``; ``Q`` has a
    row for it, ``Q_prime`` and ``b`` (the output side) do not.
    """

    def __init__(self, num_factors, num_users, num_items, L=5, d=16,
                 d_prime=4, drop_ratio=0.05, *, use_user=True, use_seq=True,
                 conv='dense', **kwargs):
        super().__init__(**kwargs)
        for name, value in [('num_factors', num_factors), ('L', L),
                            ('num_users', num_users),
                            ('num_items', num_items)]:
            if int(value) != value or value < 1:
                raise ValueError(f'{name} must be a positive integer, '
                                 f'got {value!r}')
        if d < 0 or d_prime < 0 or (use_seq and d + d_prime == 0):
            raise ValueError(f'need d >= 0, d_prime >= 0 and one of them '
                             f'> 0, got d={d}, d_prime={d_prime}')
        if conv not in ('dense', 'conv2d'):
            raise ValueError(f"conv must be 'dense' or 'conv2d', got "
                             f'{conv!r}')
        if not (use_user or use_seq):
            raise ValueError('use_user and use_seq cannot both be False')
        if not 0 <= drop_ratio < 1:
            raise ValueError(f'drop_ratio must be in [0, 1), got '
                             f'{drop_ratio!r}')
        self.num_factors, self.L, self.d, self.d_prime = (
            num_factors, L, d, d_prime)
        self.use_user, self.use_seq, self.conv = use_user, use_seq, conv
        self.P = nn.Embedding(num_users, num_factors) if use_user else None
        self.conv_h = nn.HybridSequential()
        self.Q = self.conv_v = self.fc = None
        if use_seq:
            self.Q = nn.Embedding(num_items + 1, num_factors)  # + padding
            k = num_factors
            if d_prime and conv == 'dense':
                self.conv_v = nn.Dense(d_prime, in_units=L, flatten=False)
            elif d_prime:
                self.conv_v = nn.Conv2D(d_prime, (L, 1), in_channels=1)
            for h in range(1, L + 1) if d else []:
                self.conv_h.add(
                    nn.Dense(d, in_units=h * k) if conv == 'dense' else
                    nn.Conv2D(d, (h, k), in_channels=1, activation='relu'))
            self.dropout = nn.Dropout(drop_ratio)
            self.fc = nn.Dense(num_factors, activation='relu',
                               in_units=d_prime * num_factors + d * L)
        self._init_output(num_items,
                          num_factors * (int(use_user) + int(use_seq)))

    def encode(self, F, user_id, seq):
        """The user's representation ``x = [z, p_u]``.

        Parameters
        ----------
        user_id : (batch_size,) int
        seq : (batch_size, L) int

        Returns
        -------
        (batch_size, 2 * num_factors) float, or ``num_factors`` wide in the
        ``use_user=False`` / ``use_seq=False`` ablations.
        """
        parts = []
        if self.use_seq:
            item_embs = self.Q(seq)                         # (b, L, k)
            if self.conv == 'dense':
                conv = self._convolve_dense(F, item_embs)
            else:
                conv = self._convolve_conv2d(F, item_embs)
            out = conv[0] if len(conv) == 1 else F.np.concatenate(conv, 1)
            parts.append(self.fc(self.dropout(out)))   # z: (batch_size, k)
        if self.use_user:
            parts.append(self.P(user_id))              # (batch_size, k)
        return parts[0] if len(parts) == 1 else F.np.concatenate(parts, 1)

    def _convolve_dense(self, F, item_embs):
        """Both convolutions as dense layers; a list of (b, ...) features.

        ``item_embs`` is (b, L, k). Vertical: (b, k * d_prime). Horizontal,
        for each height h: (b, d), the max over the L - h + 1 windows.
        """
        L, k = self.L, self.num_factors
        image = F.npx.reshape(item_embs, (-2, -1))          # (b, L * k)
        conv = []
        if self.conv_v is not None:
            # each vertical filter: a weighted sum of the L rows
            out_v = self.conv_v(F.np.swapaxes(item_embs, 1, 2))  # (b,k,d')
            conv.append(F.npx.reshape(out_v, (-2, -1)))
        for h, filters in enumerate(self.conv_h, start=1):
            # the filters of height h read each window of h rows
            out_h = None
            for t in range(L - h + 1):
                y = filters(image[:, t * k:(t + h) * k])    # (b, d)
                out_h = y if out_h is None else F.np.maximum(out_h, y)
            conv.append(F.npx.relu(out_h))
        return conv

    def _convolve_conv2d(self, F, item_embs):
        """The chapter's ``Conv2D`` layers; same features as the dense way.

        Vertical: (b, d_prime * k). Horizontal: (b, d) for each height.
        """
        image = F.np.expand_dims(item_embs, 1)          # (b, 1, L, k)
        conv = []
        if self.conv_v is not None:
            # (b, d_prime, 1, k) -> (b, d_prime * k)
            conv.append(F.npx.reshape(self.conv_v(image), (-2, -1)))
        for layer in self.conv_h:
            # (b, d, L - h + 1, 1) -> max-pooling over time -> (b, d)
            conv.append(F.np.max(layer(image), axis=(2, 3)))
        return conv
