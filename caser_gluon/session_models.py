"""Session-based models: the third exercise of the chapter.

"Research session-based recommendation models. How do they differ from the
sequence-aware approach implemented here?" Two classic answers, written on
the same interface as Caser (:class:`~caser_gluon.recommender.
SequentialRecommender`), so the loop and the evaluator serve them as is:

* :class:`GRU4Rec` (Hidasi et al., "Session-based Recommendations with
  Recurrent Neural Networks", ICLR 2016): a GRU reads the items one by
  one; its last hidden state is the context.
* :class:`SASRec` (Kang & McAuley, "Self-Attentive Sequential
  Recommendation", ICDM 2018): causal self-attention over the items and
  learned positions; the output at the last position is the context.

How they differ from Caser: neither has a user embedding (a session has
no user identity; ``use_user = False``), so they recommend from the
sequence alone, and they read it differently.  Caser looks at the ``L``
items through fixed windows (its horizontal filters see every window of
``h = 1..L`` consecutive items, max-pooled: order inside a window counts,
the window's place does not); GRU4Rec folds the items into a state, so
recent items weigh most and order counts everywhere; SASRec lets each
position pick, by content, which earlier items to attend to.

Cost in ``L`` (``k`` factors, ``d`` filters per height, ``H`` hidden units):

* Caser, horizontal part: ``L`` heights over ``L (L + 1) / 2`` windows,
  ``k d L (L + 1) (L + 2) / 6`` multiply-adds, so ``O(L^3)``;
* GRU4Rec: ``L`` sequential steps of ``O(k H + H^2)``, ``O(L)`` but not
  parallel over time;
* SASRec: ``O(L^2 k)`` for the attention and ``O(L k^2)`` for the
  projections and the feed-forward layers, all positions in parallel.

Measured side by side in ``experiments/SESSIONS.md``.
"""
import math

from mxnet import npx
from mxnet.gluon import nn, rnn

from .recommender import SequentialRecommender

__all__ = ['GRU4Rec', 'SASRec', 'SelfAttentionBlock', 'masked_attention']

npx.set_np()

#: Added to the attention logits of masked pairs (a masked fill that is
#: safe in float32: ``exp(-1e9 - max)`` is exactly 0).
NEG_INF = -1e9


def _check_sizes(**sizes):
    """Raise ``ValueError`` naming the first size that is not >= 1."""
    for name, value in sizes.items():
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f'{name} must be a positive integer, '
                             f'got {value!r}')


def _check_dropout(dropout):
    if not 0 <= dropout < 1:
        raise ValueError(f'dropout must be in [0, 1), got {dropout!r}')


class GRU4Rec(SequentialRecommender):
    """A GRU over the context's items; no user identity.

    ``x = W_o h_L + b_o``, where ``h_L`` is the last hidden state of a GRU
    (``num_layers`` stacked) run over the embeddings of the ``L`` items.

    Parameters
    ----------
    num_factors : int
        Item embedding size ``k``, and the width of ``x``.
    num_users : int
        Accepted so every model is built alike; unused.
    num_items : int
    L : int
        Length of the input sequence.
    hidden : int, optional
        GRU units ``H`` (default: ``num_factors``).
    dropout : float
        On the item embeddings, between GRU layers and on ``h_L``.
    num_layers : int

    Notes
    -----
    Padding: a context shorter than ``L`` is left-padded with id
    ``num_items``, which has a learned embedding; the GRU reads the
    padding first, so the real items, last, drive ``h_L``. MXNet's fused
    GRU (``rnn.GRU``) is used; it needs its initial state passed in to
    hybridize under ``npx.set_np()``, which :meth:`encode` does.
    """

    use_user = False

    def __init__(self, num_factors, num_users, num_items, *, L=5,
                 hidden=None, dropout=0.2, num_layers=1, **kwargs):
        super().__init__(**kwargs)
        hidden = num_factors if hidden is None else hidden
        _check_sizes(num_factors=num_factors, num_users=num_users,
                     num_items=num_items, L=L, hidden=hidden,
                     num_layers=num_layers)
        _check_dropout(dropout)
        self.num_factors, self.L, self.hidden = num_factors, L, hidden
        self.num_layers = num_layers
        self.Q = nn.Embedding(num_items + 1, num_factors)    # + padding
        self.dropout = nn.Dropout(dropout)
        self.gru = rnn.GRU(hidden, num_layers=num_layers, layout='NTC',
                           dropout=dropout if num_layers > 1 else 0,
                           input_size=num_factors)
        self.proj = nn.Dense(num_factors, in_units=hidden)
        self._init_output(num_items, num_factors)

    def encode(self, F, user_id, seq):
        """``x`` (batch_size, num_factors): the GRU's last state, projected.

        ``user_id`` is ignored (see ``SequentialRecommender.encode``).
        """
        emb = self.dropout(self.Q(seq))                  # (b, L, k)
        # zero initial state, (num_layers, b, H), built from the batch
        h0 = F.np.swapaxes(F.np.zeros_like(emb[:, :1, :1]), 0, 1)
        h0 = F.np.repeat(F.np.repeat(h0, self.hidden, axis=2),
                         self.num_layers, axis=0)
        out, _ = self.gru(emb, [h0])                     # (b, L, H)
        return self.proj(self.dropout(out[:, -1, :]))    # (b, k)


def masked_attention(F, q, k, v, mask, *, scale):
    """Scaled dot-product attention, ``softmax(scale q k' + M) v``.

    ``M`` is 0 where ``mask`` is 1 and ``NEG_INF`` where it is 0.

    Parameters
    ----------
    q, k, v : (n, L, d) float
    mask : (n, L, L) float
        1 where query ``i`` may attend to key ``j``, else 0. Each row needs
        at least one 1.
    scale : float
        ``1 / sqrt(d)``.

    Returns
    -------
    (n, L, d) float
    """
    scores = F.npx.batch_dot(q, k, transpose_b=True)     # (n, L, L)
    scores = scores * scale + (1 - mask) * NEG_INF
    return F.npx.batch_dot(F.npx.softmax(scores, axis=-1), v)


class SelfAttentionBlock(nn.HybridBlock):
    """One SASRec block: masked self-attention, then a feed-forward layer.

    Pre-norm residuals: ``x = x + drop(attn(LN(x)))``, then
    ``x = x + drop(W_2 drop(relu(W_1 LN(x))))``. The ``num_heads`` heads
    split the ``units`` columns of the query, key and value projections;
    their outputs are concatenated (no output projection, as in SASRec).

    Parameters
    ----------
    units : int
        Width ``k`` of the positions' vectors.
    num_heads : int
        Divides ``units``.
    dropout : float
    """

    def __init__(self, units, num_heads, dropout, **kwargs):
        super().__init__(**kwargs)
        if units % num_heads:
            raise ValueError(f'num_heads={num_heads} does not divide the '
                             f'{units} factors')
        self.units, self.num_heads = units, num_heads
        self.norm1 = nn.LayerNorm(in_channels=units)
        self.query = nn.Dense(units, flatten=False, in_units=units)
        self.key = nn.Dense(units, flatten=False, in_units=units)
        self.value = nn.Dense(units, flatten=False, in_units=units)
        self.norm2 = nn.LayerNorm(in_channels=units)
        self.ffn1 = nn.Dense(units, flatten=False, in_units=units,
                             activation='relu')
        self.ffn2 = nn.Dense(units, flatten=False, in_units=units)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, F, x):
        """(b, L, units) -> (b * num_heads, L, units / num_heads)."""
        x = F.npx.reshape(x, (-2, -2, self.num_heads, -1))  # (b, L, h, dh)
        return F.npx.reshape(F.np.transpose(x, (0, 2, 1, 3)), (-5, -2, -2))

    def hybrid_forward(self, F, x, mask):
        """``x``: (b, L, units), ``mask``: (b, L, L) -> (b, L, units)."""
        h = self.norm1(x)
        q, k, v = (self._heads(F, layer(h))
                   for layer in (self.query, self.key, self.value))
        mask = F.np.repeat(mask, self.num_heads, axis=0)  # (b * h, L, L)
        scale = 1 / math.sqrt(self.units // self.num_heads)
        att = masked_attention(F, q, k, v, mask, scale=scale)
        att = F.npx.reshape(att, (-6, -1, self.num_heads, -2, -2))
        att = F.npx.reshape(F.np.transpose(att, (0, 2, 1, 3)), (-2, -2, -1))
        x = x + self.dropout(att)                         # (b, L, units)
        ffn = self.ffn2(self.dropout(self.ffn1(self.norm2(x))))
        return x + self.dropout(ffn)


class SASRec(SequentialRecommender):
    """Causal self-attention over the context's items; no user identity.

    The input of position ``t`` is ``sqrt(k) q_{s_t} + p_t`` (item and
    learned position embeddings); ``num_blocks`` :class:`SelfAttentionBlock`
    let each position attend to itself and to the earlier real items
    (never to later positions, never to padding); a final layer norm of the
    last position's output is ``x``.

    Parameters
    ----------
    num_factors : int
        ``k``: embedding size, block width and the width of ``x``.
    num_users : int
        Accepted so every model is built alike; unused.
    num_items : int
    L : int
        Length of the input sequence (the number of positions).
    num_blocks, num_heads : int
    dropout : float
        On the embeddings and on each residual branch.

    Notes
    -----
    Padding positions (id ``num_items``, on the left) attend only to
    themselves and are zeroed after each block, so they pass nothing on.
    """

    use_user = False

    def __init__(self, num_factors, num_users, num_items, *, L=5,
                 num_blocks=2, num_heads=1, dropout=0.2, **kwargs):
        super().__init__(**kwargs)
        _check_sizes(num_factors=num_factors, num_users=num_users,
                     num_items=num_items, L=L, num_blocks=num_blocks,
                     num_heads=num_heads)
        _check_dropout(dropout)
        self.num_factors, self.L = num_factors, L
        self.Q = nn.Embedding(num_items + 1, num_factors)    # + padding
        self.positions = nn.Embedding(L, num_factors)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.HybridSequential()
        for _ in range(num_blocks):
            self.blocks.add(SelfAttentionBlock(num_factors, num_heads,
                                               dropout))
        self.norm = nn.LayerNorm(in_channels=num_factors)
        self._init_output(num_items, num_factors)

    def attention_mask(self, F, seq):
        """(b, L) ids -> (b, L, L) mask: causal, no padding keys, and 1 on
        the diagonal (so that a padding position attends to itself)."""
        L = self.L
        valid = F.np.expand_dims((seq != self.pad).astype('float32'), 1)
        causal = F.np.tril(F.np.ones((L, L)))
        return F.np.maximum(causal * valid, F.np.eye(L))

    def hidden_states(self, F, seq):
        """Every position's output before the final norm: (b, L, k)."""
        valid = F.np.expand_dims((seq != self.pad).astype('float32'), 2)
        pos = self.positions(F.np.arange(self.L, dtype='int32'))  # (L, k)
        x = self.Q(seq) * math.sqrt(self.num_factors) + pos     # (b, L, k)
        x = self.dropout(x) * valid
        mask = self.attention_mask(F, seq)
        for block in self.blocks:
            x = block(x, mask) * valid
        return x

    def encode(self, F, user_id, seq):
        """``x`` (batch_size, num_factors): the last position's output.

        ``user_id`` is ignored (see ``SequentialRecommender.encode``).
        """
        return self.norm(self.hidden_states(F, seq)[:, -1, :])
