"""Layers for recurrent networks: the vanilla RNN and LSTM cells, word embeddings, and the temporal
(per-time-step) affine and softmax layers used for captioning.

Every layer is a pair: `*_forward` returns `(out, cache)` and `*_backward(dout, cache)` returns the
gradients in the order of the forward's array inputs. Shapes: N batch, T time steps, D input dim,
H hidden dim, V vocabulary size, M output dim.

The step functions are the classic ones, written to be read. The sequence functions give the numbers of a
loop over the steps, but the reference computes them in a faster form: the input projections of all T
steps in one matrix product, the gates in preallocated buffers, the weight gradients as one product after
the loop, and a single BLAS thread for the small per-step products (asgn3/blas_threads.py).
"""

import numpy as np

from asgn3.blas_threads import blas_threads_for


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
    - x: Input data for this time step, of shape (N, D)
    - prev_h: Hidden state from the previous time step, of shape (N, H)
    - Wx: Weight matrix for input-to-hidden connections, of shape (D, H)
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
    # Store in cache what the backward pass needs; tanh's derivative can be   #
    # written with next_h alone.                                              #
    ###########################################################################
    # *****START OF YOUR CODE*****
    next_h = np.tanh(x @ Wx + prev_h @ Wh + b)
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
    - dx: Gradient of the input data, of shape (N, D)
    - dprev_h: Gradient of the previous hidden state, of shape (N, H)
    - dWx: Gradient of input-to-hidden weights, of shape (D, H)
    - dWh: Gradient of hidden-to-hidden weights, of shape (H, H)
    - db: Gradient of biases, of shape (H,)
    """
    dx, dprev_h, dWx, dWh, db = None, None, None, None, None
    ###########################################################################
    # TODO: Implement the backward pass for a single step of a vanilla RNN.   #
    # Hint: d tanh(a) / da = 1 - tanh(a)**2. First find da, the gradient of   #
    # the pre-activation (N, H); every other gradient is a product with it.   #
    ###########################################################################
    # *****START OF YOUR CODE*****
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1 - next_h * next_h)
    dx = da @ Wx.T
    dprev_h = da @ Wh.T
    dWx = x.T @ da
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
    # input data. Loop over time, calling rnn_step_forward(x[:, t], prev_h,   #
    # Wx, Wh, b) and keeping every step's hidden state and cache.             #
    # (Optional speed-up: x Wx + b does not depend on the previous step, so   #
    # all T input projections can be one matrix product before the loop.)    #
    ###########################################################################
    # *****START OF YOUR CODE*****
    # The fast form of the step loop: the input projections of all T steps are one matrix product, made
    # time-major (T, N, H) so that every step reads a contiguous block; the loop keeps only what needs the
    # previous step, and each step's tanh writes into the preallocated hidden states.
    N, T, D = x.shape
    x_steps = x.transpose(1, 0, 2).reshape(T * N, D)
    hs = (x_steps @ Wx).reshape(T, N, -1)  # becomes the hidden states, step by step
    hs += b
    recurrent = np.empty_like(hs[0])  # prev_h Wh
    with blas_threads_for(N * Wh.size):
        prev_h = h0
        for t in range(T):
            hs[t] += np.matmul(prev_h, Wh, out=recurrent)
            prev_h = np.tanh(hs[t], out=hs[t])
    h = np.ascontiguousarray(hs.transpose(1, 0, 2))
    cache = (x_steps, h0, Wx, Wh, hs)
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
    # t+1; rnn_step_backward gives the gradients of step t. dWx, dWh and db   #
    # are sums over time.                                                     #
    ###########################################################################
    # *****START OF YOUR CODE*****
    # The fast form: the loop computes only da, the gradient of every step's pre-activation, and dprev_h;
    # the weight, bias and input gradients are then sums over all steps, i.e. one matrix product each.
    x_steps, h0, Wx, Wh, hs = cache
    T, N, H = hs.shape
    da = np.empty_like(hs)
    dprev_h = np.zeros_like(hs[0])
    with blas_threads_for(N * Wh.size):
        for t in reversed(range(T)):
            np.add(dh[:, t], dprev_h, out=da[t])
            da[t] *= 1 - hs[t] * hs[t]
            np.matmul(da[t], Wh.T, out=dprev_h)
    dh0 = dprev_h
    da = da.reshape(T * N, H)
    prev_hs = np.concatenate([h0[None], hs[:-1]]).reshape(T * N, H)
    dx = np.ascontiguousarray((da @ Wx.T).reshape(T, N, -1).transpose(1, 0, 2))
    dWx = x_steps.T @ da
    dWh = prev_hs.T @ da
    db = da.sum(axis=0)
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
    - x: Input data, of shape (N, D)
    - prev_h: Previous hidden state, of shape (N, H)
    - prev_c: previous cell state, of shape (N, H)
    - Wx: Input-to-hidden weights, of shape (D, 4H)
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
    # Use the stable sigmoid above.                                           #
    ###########################################################################
    # *****START OF YOUR CODE*****
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i, f, o = sigmoid(a[:, :H]), sigmoid(a[:, H : 2 * H]), sigmoid(a[:, 2 * H : 3 * H])
    g = np.tanh(a[:, 3 * H :])
    next_c = f * prev_c + i * g
    tanh_c = np.tanh(next_c)
    next_h = o * tanh_c
    cache = (x, prev_h, prev_c, Wx, Wh, i, f, o, g, tanh_c)
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
    - dx: Gradient of input data, of shape (N, D)
    - dprev_h: Gradient of previous hidden state, of shape (N, H)
    - dprev_c: Gradient of previous cell state, of shape (N, H)
    - dWx: Gradient of input-to-hidden weights, of shape (D, 4H)
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
    ###########################################################################
    # *****START OF YOUR CODE*****
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, tanh_c = cache
    dc = dnext_c + dnext_h * o * (1 - tanh_c * tanh_c)
    di, df, do, dg = dc * g, dc * prev_c, dnext_h * tanh_c, dc * i
    da = np.concatenate([di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g * g)], axis=1)
    dprev_c = dc * f
    dx = da @ Wx.T
    dprev_h = da @ Wh.T
    dWx = x.T @ da
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
    # As in rnn_forward, loop over time with lstm_step_forward(x[:, t],       #
    # prev_h, prev_c, Wx, Wh, b). The first cell state is zeros (N, H).       #
    ###########################################################################
    # *****START OF YOUR CODE*****
    # The fast form of the step loop (same numbers): one matrix product for the input projections of all
    # steps, time-major (T, N, 4H) so that each step reads one contiguous block, which then becomes the
    # step's gates in place. The sigmoid is computed as (1 + tanh(a/2)) / 2, the same function, stable,
    # in fewer passes than exp.
    N, T, D = x.shape
    H = h0.shape[1]
    x_steps = x.transpose(1, 0, 2).reshape(T * N, D)
    gates = (x_steps @ Wx).reshape(T, N, 4 * H)  # a, then the gates i, f, o, g of every step
    gates += b
    hs = np.empty((T + 1, N, H), dtype=gates.dtype)  # hs[0] = h0, hs[t + 1] = the hidden state of step t
    cs = np.zeros((T + 1, N, H), dtype=gates.dtype)  # the same for the cell states, cs[0] = 0
    tanh_cs = np.empty((T, N, H), dtype=gates.dtype)
    recurrent = np.empty((N, 4 * H), dtype=gates.dtype)  # prev_h Wh
    hs[0] = h0
    with blas_threads_for(N * Wh.size):
        for t in range(T):
            a = gates[t]
            a += np.matmul(hs[t], Wh, out=recurrent)
            a[:, : 3 * H] *= 0.5
            np.tanh(a, out=a)
            a[:, : 3 * H] *= 0.5
            a[:, : 3 * H] += 0.5
            i, f, o, g = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
            np.multiply(f, cs[t], out=cs[t + 1])
            cs[t + 1] += i * g
            np.tanh(cs[t + 1], out=tanh_cs[t])
            np.multiply(o, tanh_cs[t], out=hs[t + 1])
    h = np.ascontiguousarray(hs[1:].transpose(1, 0, 2))
    cache = (x_steps, Wx, Wh, gates, hs, cs, tanh_cs)
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
    # of data. As in rnn_backward, loop backward in time with                 #
    # lstm_step_backward, carrying dprev_h and dprev_c (both start at zero),  #
    # and sum the weight and bias gradients over time.                        #
    ###########################################################################
    # *****START OF YOUR CODE*****
    # The fast form: the loop computes da (the gradient of every step's pre-activation, in place of the
    # gates it no longer needs), dprev_h and dprev_c; the weight, bias and input gradients are sums over
    # all steps, one matrix product each after the loop.
    x_steps, Wx, Wh, gates, hs, cs, tanh_cs = cache
    T, N, H4 = gates.shape
    H = H4 // 4
    da = np.empty_like(gates)
    dprev_h = np.zeros((N, H), dtype=gates.dtype)
    dc = np.zeros((N, H), dtype=gates.dtype)
    with blas_threads_for(N * Wh.size):
        for t in reversed(range(T)):
            s = gates[t]
            i, f, o, g = s[:, :H], s[:, H : 2 * H], s[:, 2 * H : 3 * H], s[:, 3 * H :]
            dnext_h = dh[:, t] + dprev_h
            dc += dnext_h * o * (1 - tanh_cs[t] * tanh_cs[t])
            d = da[t]  # first the gradients of the gates i, f, o, g, then through their nonlinearities
            np.multiply(dc, g, out=d[:, :H])
            np.multiply(dc, cs[t], out=d[:, H : 2 * H])
            np.multiply(dnext_h, tanh_cs[t], out=d[:, 2 * H : 3 * H])
            np.multiply(dc, i, out=d[:, 3 * H :])
            d[:, : 3 * H] *= s[:, : 3 * H] * (1 - s[:, : 3 * H])
            d[:, 3 * H :] *= 1 - g * g
            dc *= f
            np.matmul(d, Wh.T, out=dprev_h)
    dh0 = dprev_h
    da = da.reshape(T * N, H4)
    dx = np.ascontiguousarray((da @ Wx.T).reshape(T, N, -1).transpose(1, 0, 2))
    dWx = x_steps.T @ da
    dWh = hs[:-1].reshape(T * N, H).T @ da
    db = da.sum(axis=0)
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
