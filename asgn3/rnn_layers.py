"""Layers for recurrent networks: the vanilla RNN and LSTM cells, word embeddings, and the temporal
(per-time-step) affine and softmax layers used for captioning.

Every layer is a pair: `*_forward` returns `(out, cache)` and `*_backward(dout, cache)` returns the
gradients in the order of the forward's array inputs. Shapes: N batch, T time steps, D input dim,
H hidden dim, V vocabulary size, M output dim.

The sequence layers (`rnn_forward`, `lstm_forward`) multiply the inputs of all T time steps by Wx in one
matrix product before the loop, and hand each step its projected input with `Wx=None`; only the
recurrence (which needs the previous hidden state) loops over time.
"""

import numpy as np


def _check_sequence_inputs(x, h0, Wx, Wh, b, gates):
    """Raise a ValueError naming the mismatch when the inputs of rnn/lstm_forward do not fit together."""
    if x.ndim != 3 or x.shape[2] != Wx.shape[0]:
        raise ValueError(
            f"expected x of shape (N, T, D) with D={Wx.shape[0]} to match Wx {Wx.shape}, got {x.shape}"
        )
    H = Wh.shape[0]
    if Wx.shape[1] != gates * H or Wh.shape != (H, gates * H) or b.shape != (gates * H,):
        raise ValueError(
            f"expected Wx (D, {gates}H), Wh (H, {gates}H) and b ({gates}H,) with H={H}, "
            f"got Wx {Wx.shape}, Wh {Wh.shape}, b {b.shape}"
        )
    if h0.shape != (x.shape[0], H):
        raise ValueError(f"expected h0 of shape (N, H) = {(x.shape[0], H)}, got {h0.shape}")


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    """
    Run one time step of a vanilla RNN with a tanh activation.

    Inputs:
    - x: Input data for this time step, of shape (N, D); or, when Wx is None, the input projection
      x @ Wx already computed, of shape (N, H)
    - prev_h: Hidden state from the previous time step, of shape (N, H)
    - Wx: Weight matrix for input-to-hidden connections, of shape (D, H), or None (see x)
    - Wh: Weight matrix for hidden-to-hidden connections, of shape (H, H)
    - b: Biases of shape (H,)

    Returns a tuple of:
    - next_h: Next hidden state, of shape (N, H)
    - cache: Tuple of values needed for the backward pass
    """
    next_h, cache = None, None
    ###########################################################################
    # TODO: Implement a single forward step of the vanilla RNN:               #
    #   next_h = tanh(x Wx + prev_h Wh + b)                                   #
    # When Wx is None, x already holds x Wx (rnn_forward projects all time    #
    # steps at once): use it as it is. Store in cache what the backward pass  #
    # needs; tanh's derivative can be written with next_h alone.              #
    ###########################################################################
    # *****START OF YOUR CODE*****
    xw = x if Wx is None else x @ Wx
    next_h = np.tanh(xw + prev_h @ Wh + b)
    cache = (x, prev_h, Wx, Wh, next_h)
    # *****END OF YOUR CODE*****
    return next_h, cache


def rnn_step_backward(dnext_h, cache):
    """
    Backward pass for a single time step of a vanilla RNN.

    Inputs:
    - dnext_h: Gradient of loss with respect to next hidden state, of shape (N, H)
    - cache: Cache object from the forward pass

    Returns a tuple of:
    - dx: Gradient of the input data, of shape (N, D); when the forward got Wx=None, the gradient of the
      projected input, of shape (N, H)
    - dprev_h: Gradient of the previous hidden state, of shape (N, H)
    - dWx: Gradient of input-to-hidden weights, of shape (D, H), or None when the forward got Wx=None
    - dWh: Gradient of hidden-to-hidden weights, of shape (H, H)
    - db: Gradient of biases, of shape (H,)
    """
    dx, dprev_h, dWx, dWh, db = None, None, None, None, None
    ###########################################################################
    # TODO: Implement the backward pass for a single step of a vanilla RNN.   #
    # Hint: d tanh(a) / da = 1 - tanh(a)**2. First find da, the gradient of   #
    # the pre-activation (N, H); every other gradient is a product with it.   #
    # When the forward got Wx=None, dx is da itself and dWx is None.          #
    ###########################################################################
    # *****START OF YOUR CODE*****
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1 - next_h * next_h)
    if Wx is None:
        dx, dWx = da, None
    else:
        dx, dWx = da @ Wx.T, x.T @ da
    dprev_h = da @ Wh.T
    dWh = prev_h.T @ da
    db = da.sum(axis=0)
    # *****END OF YOUR CODE*****
    return dx, dprev_h, dWx, dWh, db


def rnn_forward(x, h0, Wx, Wh, b):
    """
    Run a vanilla RNN forward on an entire sequence of data. We assume an input sequence composed of T
    vectors, each of dimension D. The RNN uses a hidden size of H, and we work over a minibatch
    containing N sequences. After running the RNN forward, we return the hidden states for all time
    steps.

    Inputs:
    - x: Input data for the entire timeseries, of shape (N, T, D)
    - h0: Initial hidden state, of shape (N, H)
    - Wx: Weight matrix for input-to-hidden connections, of shape (D, H)
    - Wh: Weight matrix for hidden-to-hidden connections, of shape (H, H)
    - b: Biases of shape (H,)

    Returns a tuple of:
    - h: Hidden states for the entire timeseries, of shape (N, T, H)
    - cache: Values needed in the backward pass
    """
    _check_sequence_inputs(x, h0, Wx, Wh, b, gates=1)
    h, cache = None, None
    ###########################################################################
    # TODO: Implement forward pass for a vanilla RNN running on a sequence of #
    # input data. Compute the input projection of all T steps in one matrix   #
    # product, xw = x Wx of shape (N, T, H) (reshape x to (N*T, D) first);    #
    # then loop over time, calling rnn_step_forward(xw[:, t], prev_h, None,   #
    # Wh, b) and keeping every step's cache.                                  #
    ###########################################################################
    # *****START OF YOUR CODE*****
    N, T, D = x.shape
    xw = (x.reshape(N * T, D) @ Wx).reshape(N, T, -1)
    h = np.empty_like(xw)
    step_caches = []
    prev_h = h0
    for t in range(T):
        prev_h, step_cache = rnn_step_forward(xw[:, t], prev_h, None, Wh, b)
        h[:, t] = prev_h
        step_caches.append(step_cache)
    cache = (x, Wx, Wh, step_caches)
    # *****END OF YOUR CODE*****
    return h, cache


def rnn_backward(dh, cache):
    """
    Compute the backward pass for a vanilla RNN over an entire sequence of data.

    Inputs:
    - dh: Upstream gradients of all hidden states, of shape (N, T, H)
    - cache: Cache object from the forward pass

    Returns a tuple of:
    - dx: Gradient of inputs, of shape (N, T, D)
    - dh0: Gradient of initial hidden state, of shape (N, H)
    - dWx: Gradient of input-to-hidden weights, of shape (D, H)
    - dWh: Gradient of hidden-to-hidden weights, of shape (H, H)
    - db: Gradient of biases, of shape (H,)
    """
    dx, dh0, dWx, dWh, db = None, None, None, None, None
    ###########################################################################
    # TODO: Implement the backward pass for a vanilla RNN running an entire   #
    # sequence of data. Loop backward in time: the hidden state of step t     #
    # receives dh[:, t] from above plus the dprev_h coming back from step     #
    # t+1. rnn_step_backward gives the gradient of each step's projected      #
    # input (N, H); stack them into dxw (N, T, H) and finish with one matrix  #
    # product each for dx and dWx. dWh and db are sums over time.             #
    ###########################################################################
    # *****START OF YOUR CODE*****
    x, Wx, Wh, step_caches = cache
    N, T, D = x.shape
    dxw = np.empty_like(dh)
    dprev_h = np.zeros_like(dh[:, 0])
    dWh, db = np.zeros_like(Wh), np.zeros(Wh.shape[1], dtype=Wh.dtype)
    for t in reversed(range(T)):
        dxw[:, t], dprev_h, _, dWh_t, db_t = rnn_step_backward(dh[:, t] + dprev_h, step_caches[t])
        dWh += dWh_t
        db += db_t
    dh0 = dprev_h
    dxw = dxw.reshape(N * T, -1)
    dx = (dxw @ Wx.T).reshape(N, T, D)
    dWx = x.reshape(N * T, D).T @ dxw
    # *****END OF YOUR CODE*****
    return dx, dh0, dWx, dWh, db


def word_embedding_forward(x, W):
    """
    Forward pass for word embeddings. We operate on minibatches of size N where each sequence has
    length T. We assume a vocabulary of V words, assigning each word to a vector of dimension D.

    Inputs:
    - x: Integer array of shape (N, T) giving indices of words. Each element idx of x must be in the
      range 0 <= idx < V.
    - W: Weight matrix of shape (V, D) giving word vectors for all words.

    Returns a tuple of:
    - out: Array of shape (N, T, D) giving word vectors for all input words.
    - cache: Values needed for the backward pass
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"expected integer word indices x, got dtype {x.dtype}")
    if x.size and (x.min() < 0 or x.max() >= W.shape[0]):
        raise ValueError(
            f"expected word indices in [0, {W.shape[0]}) to match W {W.shape}, "
            f"got values from {x.min()} to {x.max()}"
        )
    out, cache = None, None
    ###########################################################################
    # TODO: Implement the forward pass for word embeddings. This is a single  #
    # line: integer array indexing picks row x[n, t] of W for every (n, t).   #
    ###########################################################################
    # *****START OF YOUR CODE*****
    out = W[x]
    cache = (x, W.shape, W.dtype)
    # *****END OF YOUR CODE*****
    return out, cache


def word_embedding_backward(dout, cache):
    """
    Backward pass for word embeddings. We cannot back-propagate into the words since they are integers,
    so we only return gradient for the word embedding matrix.

    Inputs:
    - dout: Upstream gradients of shape (N, T, D)
    - cache: Values from the forward pass

    Returns:
    - dW: Gradient of word embedding matrix, of shape (V, D).
    """
    dW = None
    ###########################################################################
    # TODO: Implement the backward pass for word embeddings. A word that      #
    # appears several times gets the sum of its gradients: dW[x] += dout      #
    # would keep only one of them. Use np.add.at.                             #
    ###########################################################################
    # *****START OF YOUR CODE*****
    x, W_shape, W_dtype = cache
    dW = np.zeros(W_shape, dtype=W_dtype)
    np.add.at(dW, x, dout)
    # *****END OF YOUR CODE*****
    return dW


def sigmoid(x):
    """
    A numerically stable version of the logistic sigmoid function.

    Inputs:
    - x: Array of any shape

    Returns:
    - The elementwise sigmoid 1 / (1 + exp(-x)), same shape and dtype as x
    """
    out = None
    ###########################################################################
    # TODO: Compute the sigmoid without overflow. exp(-x) overflows for large #
    # negative x and exp(x) for large positive x, but exp of a number <= 0    #
    # never does. Multiplying 1 / (1 + exp(-x)) above and below by exp(x)     #
    # where x < 0 gives, for every x,                                         #
    #   sigmoid(x) = exp(min(x, 0)) / (1 + exp(-|x|)).                        #
    # (It also keeps the precision of tiny values such as sigmoid(-50).)      #
    ###########################################################################
    # *****START OF YOUR CODE*****
    out = np.exp(np.minimum(x, 0)) / (1 + np.exp(-np.abs(x)))
    # *****END OF YOUR CODE*****
    return out


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """
    Forward pass for a single timestep of an LSTM.

    The input data has dimension D, the hidden state has dimension H, and we use a minibatch size of N.

    Inputs:
    - x: Input data, of shape (N, D); or, when Wx is None, the input projection x @ Wx already
      computed, of shape (N, 4H)
    - prev_h: Previous hidden state, of shape (N, H)
    - prev_c: previous cell state, of shape (N, H)
    - Wx: Input-to-hidden weights, of shape (D, 4H), or None (see x)
    - Wh: Hidden-to-hidden weights, of shape (H, 4H)
    - b: Biases, of shape (4H,)

    Returns a tuple of:
    - next_h: Next hidden state, of shape (N, H)
    - next_c: Next cell state, of shape (N, H)
    - cache: Tuple of values needed for backward pass.
    """
    next_h, next_c, cache = None, None, None
    ###########################################################################
    # TODO: Implement the forward pass for a single timestep of an LSTM.      #
    # The activation vector a = x Wx + prev_h Wh + b has shape (N, 4H); its   #
    # four blocks of H columns are, in this order,                            #
    #   i = sigmoid(a[:, :H]), f = sigmoid(a[:, H:2H]),                       #
    #   o = sigmoid(a[:, 2H:3H]), g = tanh(a[:, 3H:]).                        #
    #   next_c = f * prev_c + i * g,   next_h = o * tanh(next_c).             #
    # When Wx is None, x already holds x Wx. Use the stable sigmoid above.    #
    ###########################################################################
    # *****START OF YOUR CODE*****
    H = prev_h.shape[1]
    a = (x if Wx is None else x @ Wx) + prev_h @ Wh + b
    gates = np.empty_like(a)
    gates[:, : 3 * H] = sigmoid(a[:, : 3 * H])
    gates[:, 3 * H :] = np.tanh(a[:, 3 * H :])
    i, f, o, g = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H : 3 * H], gates[:, 3 * H :]
    next_c = f * prev_c + i * g
    tanh_c = np.tanh(next_c)
    next_h = o * tanh_c
    cache = (x, prev_h, prev_c, Wx, Wh, gates, tanh_c)
    # *****END OF YOUR CODE*****
    return next_h, next_c, cache


def lstm_step_backward(dnext_h, dnext_c, cache):
    """
    Backward pass for a single timestep of an LSTM.

    Inputs:
    - dnext_h: Gradients of next hidden state, of shape (N, H)
    - dnext_c: Gradients of next cell state, of shape (N, H)
    - cache: Values from the forward pass

    Returns a tuple of:
    - dx: Gradient of input data, of shape (N, D); when the forward got Wx=None, the gradient of the
      projected input, of shape (N, 4H)
    - dprev_h: Gradient of previous hidden state, of shape (N, H)
    - dprev_c: Gradient of previous cell state, of shape (N, H)
    - dWx: Gradient of input-to-hidden weights, of shape (D, 4H), or None when the forward got Wx=None
    - dWh: Gradient of hidden-to-hidden weights, of shape (H, 4H)
    - db: Gradient of biases, of shape (4H,)
    """
    dx, dprev_h, dprev_c, dWx, dWh, db = None, None, None, None, None, None
    ###########################################################################
    # TODO: Implement the backward pass for a single timestep of an LSTM.     #
    # next_c reaches the loss twice: directly (dnext_c) and through next_h    #
    # = o * tanh(next_c). Add both, then go back through next_c = f*prev_c +  #
    # i*g to the four gates, and through each gate's nonlinearity to da       #
    # (N, 4H), in the order i, f, o, g. HINT: sigmoid'(a) = s * (1 - s) and   #
    # tanh'(a) = 1 - t**2 with s, t the values kept from the forward pass.    #
    # When the forward got Wx=None, dx is da itself and dWx is None.          #
    ###########################################################################
    # *****START OF YOUR CODE*****
    x, prev_h, prev_c, Wx, Wh, gates, tanh_c = cache
    H = prev_h.shape[1]
    i, f, o, g = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H : 3 * H], gates[:, 3 * H :]
    dc = dnext_c + dnext_h * o * (1 - tanh_c * tanh_c)
    da = np.empty_like(gates)  # first the gradients of the gates i, f, o, g ...
    da[:, :H] = dc * g
    da[:, H : 2 * H] = dc * prev_c
    da[:, 2 * H : 3 * H] = dnext_h * tanh_c
    da[:, 3 * H :] = dc * i
    da[:, : 3 * H] *= gates[:, : 3 * H] * (1 - gates[:, : 3 * H])  # ... then through their nonlinearities
    da[:, 3 * H :] *= 1 - g * g
    dprev_c = dc * f
    if Wx is None:
        dx, dWx = da, None
    else:
        dx, dWx = da @ Wx.T, x.T @ da
    dprev_h = da @ Wh.T
    dWh = prev_h.T @ da
    db = da.sum(axis=0)
    # *****END OF YOUR CODE*****
    return dx, dprev_h, dprev_c, dWx, dWh, db


def lstm_forward(x, h0, Wx, Wh, b):
    """
    Forward pass for an LSTM over an entire sequence of data. We assume an input sequence composed of
    T vectors, each of dimension D. The LSTM uses a hidden size of H, and we work over a minibatch
    containing N sequences. After running the LSTM forward, we return the hidden states for all
    timesteps.

    Note that the initial cell state is passed as input, but the initial cell state is set to zero.
    Also note that the cell state is not returned; it is an internal variable to the LSTM and is not
    accessed from outside.

    Inputs:
    - x: Input data of shape (N, T, D)
    - h0: Initial hidden state of shape (N, H)
    - Wx: Weights for input-to-hidden connections, of shape (D, 4H)
    - Wh: Weights for hidden-to-hidden connections, of shape (H, 4H)
    - b: Biases of shape (4H,)

    Returns a tuple of:
    - h: Hidden states for all timesteps of all sequences, of shape (N, T, H)
    - cache: Values needed for the backward pass.
    """
    _check_sequence_inputs(x, h0, Wx, Wh, b, gates=4)
    h, cache = None, None
    ###########################################################################
    # TODO: Implement the forward pass for an LSTM over an entire timeseries. #
    # As in rnn_forward: project all T inputs at once (xw = x Wx, shape       #
    # (N, T, 4H)), then loop over time with lstm_step_forward(xw[:, t],       #
    # prev_h, prev_c, None, Wh, b). The first cell state is zeros (N, H).     #
    ###########################################################################
    # *****START OF YOUR CODE*****
    N, T, D = x.shape
    xw = (x.reshape(N * T, D) @ Wx).reshape(N, T, -1)
    h = np.empty((N, T, h0.shape[1]), dtype=xw.dtype)
    step_caches = []
    prev_h, prev_c = h0, np.zeros_like(h0)
    for t in range(T):
        prev_h, prev_c, step_cache = lstm_step_forward(xw[:, t], prev_h, prev_c, None, Wh, b)
        h[:, t] = prev_h
        step_caches.append(step_cache)
    cache = (x, Wx, Wh, step_caches)
    # *****END OF YOUR CODE*****
    return h, cache


def lstm_backward(dh, cache):
    """
    Backward pass for an LSTM over an entire sequence of data.

    Inputs:
    - dh: Upstream gradients of hidden states, of shape (N, T, H)
    - cache: Values from the forward pass

    Returns a tuple of:
    - dx: Gradient of input data of shape (N, T, D)
    - dh0: Gradient of initial hidden state of shape (N, H)
    - dWx: Gradient of input-to-hidden weight matrix of shape (D, 4H)
    - dWh: Gradient of hidden-to-hidden weight matrix of shape (H, 4H)
    - db: Gradient of biases, of shape (4H,)
    """
    dx, dh0, dWx, dWh, db = None, None, None, None, None
    ###########################################################################
    # TODO: Implement the backward pass for an LSTM over an entire timeseries #
    # of data. As in rnn_backward, loop backward in time, carrying dprev_h    #
    # and dprev_c (both start at zero); collect the gradient of each step's   #
    # projected input into dxw (N, T, 4H) and finish with one matrix product  #
    # each for dx and dWx.                                                    #
    ###########################################################################
    # *****START OF YOUR CODE*****
    x, Wx, Wh, step_caches = cache
    N, T, D = x.shape
    dxw = np.empty((N, T, Wx.shape[1]), dtype=dh.dtype)
    dprev_h = np.zeros_like(dh[:, 0])
    dprev_c = np.zeros_like(dprev_h)
    dWh, db = np.zeros_like(Wh), np.zeros(Wh.shape[1], dtype=Wh.dtype)
    for t in reversed(range(T)):
        dxw[:, t], dprev_h, dprev_c, _, dWh_t, db_t = lstm_step_backward(
            dh[:, t] + dprev_h, dprev_c, step_caches[t]
        )
        dWh += dWh_t
        db += db_t
    dh0 = dprev_h
    dxw = dxw.reshape(N * T, -1)
    dx = (dxw @ Wx.T).reshape(N, T, D)
    dWx = x.reshape(N * T, D).T @ dxw
    # *****END OF YOUR CODE*****
    return dx, dh0, dWx, dWh, db


def temporal_affine_forward(x, w, b):
    """
    Forward pass for a temporal affine layer. The input is a set of D-dimensional vectors arranged
    into a minibatch of N timeseries, each of length T. We use an affine function to transform each
    of those vectors into a new vector of dimension M.

    Inputs:
    - x: Input data of shape (N, T, D)
    - w: Weights of shape (D, M)
    - b: Biases of shape (M,)

    Returns a tuple of:
    - out: Output data of shape (N, T, M)
    - cache: Values needed for the backward pass
    """
    if x.ndim != 3 or x.shape[2] != w.shape[0]:
        raise ValueError(
            f"expected x of shape (N, T, D) with D={w.shape[0]} to match w {w.shape}, got {x.shape}"
        )
    out, cache = None, None
    ###########################################################################
    # TODO: Implement the temporal affine forward pass: the same affine map   #
    # at every time step, as one matrix product on x reshaped to (N*T, D).    #
    ###########################################################################
    # *****START OF YOUR CODE*****
    N, T, D = x.shape
    out = (x.reshape(N * T, D) @ w + b).reshape(N, T, -1)
    cache = (x, w)
    # *****END OF YOUR CODE*****
    return out, cache


def temporal_affine_backward(dout, cache):
    """
    Backward pass for temporal affine layer.

    Input:
    - dout: Upstream gradients of shape (N, T, M)
    - cache: Values from forward pass

    Returns a tuple of:
    - dx: Gradient of input, of shape (N, T, D)
    - dw: Gradient of weights, of shape (D, M)
    - db: Gradient of biases, of shape (M,)
    """
    dx, dw, db = None, None, None
    ###########################################################################
    # TODO: Implement the temporal affine backward pass, again with x and     #
    # dout reshaped to two dimensions (N*T rows).                             #
    ###########################################################################
    # *****START OF YOUR CODE*****
    x, w = cache
    N, T, D = x.shape
    dout2 = dout.reshape(N * T, -1)
    dx = (dout2 @ w.T).reshape(N, T, D)
    dw = x.reshape(N * T, D).T @ dout2
    db = dout2.sum(axis=0)
    # *****END OF YOUR CODE*****
    return dx, dw, db


def temporal_softmax_loss(x, y, mask, verbose=False):
    """
    A temporal version of softmax loss for use in RNNs. We assume that we are making predictions over
    a vocabulary of size V for each timestep of a timeseries of length T, over a minibatch of size N.
    The input x gives scores for all vocabulary elements at all timesteps, and y gives the indices of
    the ground-truth element at each timestep. We use a cross-entropy loss at each timestep, summing
    the loss over all timesteps and averaging across the minibatch.

    As an additional complication, we may want to ignore the model output at some timesteps, since
    sequences of different length may have been combined into a minibatch and padded with NULL tokens.
    The optional mask argument tells us which elements should contribute to the loss.

    Inputs:
    - x: Input scores, of shape (N, T, V)
    - y: Ground-truth indices, of shape (N, T) where each element is in the range 0 <= y[i, t] < V
    - mask: Boolean array of shape (N, T) where mask[i, t] tells whether or not the scores at
      x[i, t] should contribute to the loss.
    - verbose: If True, print the shape of dx

    Returns a tuple of:
    - loss: Scalar giving loss, divided by N only (not by T, nor by the number of unmasked steps)
    - dx: Gradient of loss with respect to scores x, of shape (N, T, V)
    """
    if x.ndim != 3 or np.shape(y) != x.shape[:2] or np.shape(mask) != x.shape[:2]:
        raise ValueError(
            f"expected scores x (N, T, V) with y and mask of shape (N, T) = {x.shape[:2]}, "
            f"got x {x.shape}, y {np.shape(y)}, mask {np.shape(mask)}"
        )
    loss, dx = None, None
    ###########################################################################
    # TODO: Implement the temporal softmax loss. Flatten x to (N*T, V) and y, #
    # mask to (N*T,). Subtract each row's maximum before exponentiating, use  #
    # log-softmax for the loss, and multiply both the per-step losses and     #
    # the rows of dx by the mask. Divide by N, the batch size, only.          #
    ###########################################################################
    # *****START OF YOUR CODE*****
    N, T, V = x.shape
    x_flat = x.reshape(N * T, V)
    y_flat = np.asarray(y).reshape(N * T)
    mask_flat = np.asarray(mask, dtype=bool).reshape(N * T)
    shifted = x_flat - x_flat.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(N * T)
    loss = -np.sum(mask_flat * log_probs[rows, y_flat]) / N
    dx_flat = np.exp(log_probs)
    dx_flat[rows, y_flat] -= 1
    dx_flat *= mask_flat[:, None] / N
    dx = dx_flat.reshape(N, T, V)
    # *****END OF YOUR CODE*****
    if verbose:
        print("dx:", dx.shape)
    return loss, dx
