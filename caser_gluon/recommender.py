"""The interface every sequential recommender of this package implements.

Not a section of the chapter: the chapter has one model. Caser, and the
session-based models of the third exercise, share one small interface, so
that the training loop, the evaluator and ``recommend`` serve all of them
unchanged (RecBole's ``calculate_loss`` / ``predict`` /
``full_sort_predict`` is the model followed):

* :meth:`SequentialRecommender.encode` turns a batch of contexts (a user
  and the last ``L`` items) into one vector each, ``x`` of ``width``
  values;
* an item is scored as ``x . Q'_i + b_i`` with the output embeddings
  ``Q_prime`` (``num_items x width``) and ``b`` (``num_items x 1``):
  :meth:`~SequentialRecommender.hybrid_forward` scores given items (what
  the loop trains), :meth:`~SequentialRecommender.score_all` scores every
  item for a batch of contexts, :func:`table_scores` does the same in
  NumPy from :meth:`~SequentialRecommender.folded_output_table` (what the
  evaluator uses: one BLAS product a block of users, several times faster
  than MXNet's), :class:`AllItemScores` as a hybridizable block (what the
  full softmax loss trains);
* or, with a *tied* output (RecBole's Caser), ``x`` first goes through a
  dense layer ``out_proj`` to the input embeddings' width and an item is
  scored as ``act(W x + c) . Q_i`` with the input item embeddings ``Q``
  themselves, no bias (:meth:`~SequentialRecommender.project`);
* a model whose dropout masks may be given as inputs lists their widths in
  ``mask_widths`` and draws them with ``draw_masks``; the training loop
  then scores through :class:`MaskedScores`.

Item id ``num_items`` is the padding id of a context shorter than ``L``;
input-side item embeddings keep a row for it, the output side does not.
"""
import numpy as onp
from mxnet import ndarray, npx
from mxnet.gluon import nn

__all__ = ['AllItemScores', 'MaskedScores', 'SequentialRecommender',
           'table_scores']

npx.set_np()


class SequentialRecommender(nn.HybridBlock):
    """Base of the models: encode a context once, score items against it.

    Subclasses set ``self.L`` and create the output side with
    :meth:`_init_output`, then implement :meth:`encode`.
    """

    def _init_output(self, num_items, width, *, tied=None, activation=None):
        """The output side, after ``encode``'s ``width`` values.

        Parameters
        ----------
        num_items, width : int
        tied : nn.Embedding, optional
            Score with these input item embeddings (``num_items + 1`` rows
            of ``k``, the last the padding), after a dense layer
            ``out_proj`` (width -> k, ``activation``), no bias. Default: a
            separate ``Q_prime`` (num_items, width) and bias ``b``.
        activation : str, optional
            Of ``out_proj`` (``'relu'``, ...; None: linear).
        """
        self.num_items = num_items
        self.out_proj = self.tied = self.Q_prime = self.b = None
        if tied is None:
            self.width = width
            self.Q_prime = nn.Embedding(num_items, width)
            self.b = nn.Embedding(num_items, 1)
            return
        self.width = tied._kwargs['output_dim']                 # k
        # a plain attribute: ``tied`` is already a child block (``Q``)
        object.__setattr__(self, 'tied', tied)
        self.out_proj = nn.Dense(self.width, in_units=width,
                                 activation=activation)

    def project(self, F, x):
        """``encode``'s context vectors as the output side reads them.

        ``x`` itself, or ``act(out_proj(x))`` with a tied output.
        """
        del F
        return x if self.out_proj is None else self.out_proj(x)

    def output_items(self, items):
        """Output embeddings (..., width) and biases (..., 1) or None."""
        if self.tied is not None:
            return self.tied(items), None
        return self.Q_prime(items), self.b(items)

    def output_table(self, ctx):
        """Every item's output embedding (num_items, width) and bias
        (num_items, 1) or None, as mxnet arrays on ``ctx``."""
        if self.tied is not None:
            return self.tied.weight.data(ctx)[:self.num_items], None
        return self.Q_prime.weight.data(ctx), self.b.weight.data(ctx)

    def folded_output_table(self, ctx):
        """:meth:`output_table` in NumPy, the bias (zeros without one) as
        its last column: (num_items, width + 1) float32, for
        :func:`table_scores`."""
        q, bias = self.output_table(ctx)
        q = q.asnumpy()
        last = (bias.asnumpy() if bias is not None
                else onp.zeros((len(q), 1), q.dtype))
        return onp.concatenate([q, last], axis=1)

    @property
    def pad(self):
        """The padding item id, ``num_items``."""
        return self.num_items

    def encode(self, F, user_id, seq):
        """Context vectors.

        Parameters
        ----------
        F : module
            ``mxnet.symbol`` or ``mxnet.ndarray`` (hybridized or not).
        user_id : (batch_size,) int
        seq : (batch_size, L) int
            The last ``L`` items, oldest first, left-padded with ``pad``.

        Returns
        -------
        (batch_size, width) float
        """
        raise NotImplementedError

    def row_tables(self):
        """The embedding tables, by the batch input holding their row ids.

        Returns
        -------
        dict of str to list of Parameter
            ``'users'``: ``P`` (if any); ``'seqs'``: ``Q`` (if any);
            ``'items'``: ``Q_prime`` and ``b``.
        """
        tables = {'users': ['P'], 'seqs': ['Q'], 'items': ['Q_prime', 'b']}
        return {key: [getattr(self, n).weight for n in names
                      if getattr(self, n, None) is not None]
                for key, names in tables.items()}

    #: widths of the dropout masks :meth:`encode` takes as inputs (none:
    #: the model's own ``Dropout`` draws them); see :class:`MaskedScores`
    mask_widths = ()

    def draw_masks(self, rng, batch_size):
        """Dropout masks of :attr:`mask_widths` for a batch (NumPy)."""
        return []

    def hybrid_forward(self, F, user_id, seq, item_id):
        """Score items for each context.

        Parameters
        ----------
        user_id : (batch_size,) int
        seq : (batch_size, L) int
        item_id : (batch_size,) or (batch_size, K) int
            One item per row (the chapter's call), or ``K`` items per row,
            e.g. the targets and the negatives, scored in one pass over
            the context.

        Returns
        -------
        Scores of ``item_id``'s shape: (batch_size,) or (batch_size, K).
        """
        return self.score_items(F, self.encode(F, user_id, seq), item_id)

    def score_items(self, F, x, item_id):
        """Scores of ``item_id`` for :meth:`encode`'s vectors ``x``
        (batch_size, width), through :meth:`project`; shapes as in
        :meth:`hybrid_forward`."""
        x = self.project(F, x)                               # (b, w)
        items = F.npx.reshape(item_id, (-2, -1))             # (b, K)
        q, bias = self.output_items(items)                   # (b, K, w)
        scores = F.npx.batch_dot(q, F.np.expand_dims(x, 2))  # (b, K, 1)
        scores = F.npx.reshape(scores, (-2, -2))
        if bias is not None:
            scores = scores + F.npx.reshape(bias, (-2, -2))  # (b, K)
        return F.npx.reshape_like(scores, item_id)

    def user_vectors(self, user_id, seq):
        """:meth:`encode` and :meth:`project` run imperatively:
        (batch_size, width) vectors."""
        return self.project(ndarray, self.encode(ndarray, user_id, seq))

    def score_all(self, user_id, seq):
        """Scores of every item for a batch of contexts.

        Call it under ``autograd.predict_mode()`` for evaluation (no
        dropout).

        Parameters
        ----------
        user_id : (batch_size,) int mxnet array
        seq : (batch_size, L) int mxnet array

        Returns
        -------
        (batch_size, num_items) float32 mxnet array, on ``seq``'s device.
        """
        x = self.user_vectors(user_id, seq)                  # (b, w)
        q, bias = self.output_table(seq.ctx)                 # (n, w)
        scores = ndarray.np.dot(x, q.T)
        return scores if bias is None else scores + bias.T

    def all_item_scores(self):
        """This model's :class:`AllItemScores`, made once (hybridized like
        the model)."""
        block = getattr(self, '_all_item_scores', None)
        if block is None:
            block = AllItemScores(self)
            if self._active:
                block.hybridize(static_alloc=True, static_shape=False)
            # a plain attribute, not a child block: no parameters twice
            object.__setattr__(self, '_all_item_scores', block)
        return block


class AllItemScores(nn.HybridBlock):
    """Scores of every item for a batch of contexts, as one block.

    :meth:`SequentialRecommender.score_all` as a hybridizable block (one
    compiled graph, forward and backward), for training with the full
    softmax. Holds no parameters of its own: it calls ``model``'s.

    Parameters
    ----------
    model : SequentialRecommender
    """

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self._items = {}

    def forward(self, user_id, seq, *masks):
        """(batch_size, num_items) scores of ``user_id``, ``seq`` (and the
        model's dropout ``masks``, as :class:`MaskedScores` takes them)."""
        ctx = seq.ctx
        if ctx not in self._items:
            self._items[ctx] = ndarray.np.arange(
                self.model.num_items, dtype='int32', ctx=ctx)
        return super().forward(user_id, seq, self._items[ctx], *masks)

    def hybrid_forward(self, F, user_id, seq, items, *masks):
        """Scores ``(batch_size, num_items)``; ``items`` is ``arange``."""
        m = self.model
        x = (m.encode(F, user_id, seq, masks=masks) if masks
             else m.encode(F, user_id, seq))
        x = m.project(F, x)                                  # (b, w)
        q, bias = m.output_items(items)                      # (n, w)
        if bias is None:
            return F.npx.fully_connected(x, q, None, no_bias=True,
                                         num_hidden=m.num_items)
        return F.npx.fully_connected(x, q, F.npx.reshape(bias, (-1,)),
                                     num_hidden=m.num_items)


class MaskedScores(nn.HybridBlock):
    """A model's scores with its dropout masks as inputs (training).

    ``MaskedScores(net)(user_id, seq, item_id, *masks)`` is ``net(user_id,
    seq, item_id)`` with the masks of ``net.mask_widths`` (e.g. from
    ``net.draw_masks``) in place of MXNet's ``Dropout``. It is a block of
    its own, hybridized on its own, so that ``net`` keeps the chapter's
    call for everything else (d2l's loop and evaluator, prediction).
    """

    def __init__(self, net, **kwargs):
        super().__init__(**kwargs)
        self.net = net

    def hybrid_forward(self, F, user_id, seq, item_id, *masks):
        x = self.net.encode(F, user_id, seq, masks=masks)
        return self.net.score_items(F, x, item_id)


def table_scores(x, table):
    """Scores of every item, ``x . Q'_i + b_i``, as one matrix product.

    ``[x, 1] @ table.T`` with NumPy's BLAS: the bias is the table's last
    column, so no second pass over the scores adds it (MXNet 1.9's
    ``np.dot``, the bias added and the copy out took several times longer
    on the evaluator's blocks of users).

    Parameters
    ----------
    x : (batch_size, width) float32 numpy.ndarray
        :meth:`SequentialRecommender.user_vectors`, as NumPy.
    table : (num_items, width + 1) float32 numpy.ndarray
        :meth:`SequentialRecommender.folded_output_table`.

    Returns
    -------
    (batch_size, num_items) float32 numpy.ndarray
    """
    ones = onp.ones((len(x), 1), table.dtype)
    return onp.concatenate([x.astype(table.dtype), ones], axis=1) @ table.T
