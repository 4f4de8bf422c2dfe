"""Sandwich layers: common stacks of layers as one forward/backward pair, used by the models.

Each forward returns (out, cache) with cache the tuple of its layers' caches; each backward returns the
gradients of the forward's array inputs, in their order. The convolutions use the fast layers.
"""

from asgn3.fast_layers import (
    conv_backward_fast,
    conv_forward_fast,
    max_pool_backward_fast,
    max_pool_forward_fast,
)
from asgn3.layers import (
    affine_backward,
    affine_forward,
    batchnorm_backward,
    batchnorm_forward,
    relu_backward,
    relu_forward,
    spatial_batchnorm_backward,
    spatial_batchnorm_forward,
)


def affine_relu_forward(x, w, b):
    """
    An affine layer followed by a ReLU.

    Inputs:
    - x: input of shape (N, d_1, ..., d_k), flattened to (N, D)
    - w: weights of shape (D, M)
    - b: biases of shape (M,)

    Returns a tuple of:
    - out: output of the ReLU, of shape (N, M)
    - cache: (affine cache, relu cache)
    """
    a, fc_cache = affine_forward(x, w, b)
    out, relu_cache = relu_forward(a)
    return out, (fc_cache, relu_cache)


def affine_relu_backward(dout, cache, guided=False):
    """
    Backward pass of affine_relu_forward.

    Inputs:
    - dout: upstream derivative, of shape (N, M)
    - cache: from affine_relu_forward
    - guided: the ReLU's backward in guided-backpropagation mode (see layers.relu_backward)

    Returns a tuple of:
    - dx: of shape (N, d_1, ..., d_k); dw: of shape (D, M); db: of shape (M,)
    """
    fc_cache, relu_cache = cache
    da = relu_backward(dout, relu_cache, guided)
    return affine_backward(da, fc_cache)


def affine_bn_relu_forward(x, w, b, gamma, beta, bn_param):
    """
    An affine layer, then batch normalization, then a ReLU.

    Inputs:
    - x: input of shape (N, d_1, ..., d_k), flattened to (N, D)
    - w: weights of shape (D, M)
    - b: biases of shape (M,)
    - gamma, beta: batch normalization scale and shift, of shape (M,)
    - bn_param: dictionary of batchnorm_forward ('mode', running statistics...)

    Returns a tuple of:
    - out: output of the ReLU, of shape (N, M)
    - cache: (affine cache, batchnorm cache, relu cache)
    """
    a, fc_cache = affine_forward(x, w, b)
    a_bn, bn_cache = batchnorm_forward(a, gamma, beta, bn_param)
    out, relu_cache = relu_forward(a_bn)
    return out, (fc_cache, bn_cache, relu_cache)


def affine_bn_relu_backward(dout, cache, guided=False):
    """
    Backward pass of affine_bn_relu_forward.

    Inputs:
    - dout: upstream derivative, of shape (N, M)
    - cache: from affine_bn_relu_forward
    - guided: the ReLU's backward in guided-backpropagation mode (see layers.relu_backward)

    Returns a tuple of:
    - dx: of shape (N, d_1, ..., d_k); dw: (D, M); db: (M,); dgamma: (M,); dbeta: (M,)
    """
    fc_cache, bn_cache, relu_cache = cache
    da_bn = relu_backward(dout, relu_cache, guided)
    da, dgamma, dbeta = batchnorm_backward(da_bn, bn_cache)
    dx, dw, db = affine_backward(da, fc_cache)
    return dx, dw, db, dgamma, dbeta


def conv_relu_forward(x, w, b, conv_param):
    """
    A convolution followed by a ReLU.

    Inputs:
    - x: input of shape (N, C, H, W)
    - w: filters of shape (F, C, HH, WW)
    - b: biases of shape (F,)
    - conv_param: dictionary with 'stride' and 'pad'

    Returns a tuple of:
    - out: output of the ReLU, of shape (N, F, H', W')
    - cache: (conv cache, relu cache)
    """
    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    out, relu_cache = relu_forward(a)
    return out, (conv_cache, relu_cache)


def conv_relu_backward(dout, cache, guided=False):
    """
    Backward pass of conv_relu_forward.

    Inputs:
    - dout: upstream derivative, of shape (N, F, H', W')
    - cache: from conv_relu_forward
    - guided: the ReLU's backward in guided-backpropagation mode (see layers.relu_backward)

    Returns a tuple of:
    - dx: of shape (N, C, H, W); dw: (F, C, HH, WW); db: (F,)
    """
    conv_cache, relu_cache = cache
    da = relu_backward(dout, relu_cache, guided)
    return conv_backward_fast(da, conv_cache)


def conv_bn_relu_forward(x, w, b, gamma, beta, conv_param, bn_param):
    """
    A convolution, then spatial batch normalization, then a ReLU.

    Inputs:
    - x: input of shape (N, C, H, W)
    - w: filters of shape (F, C, HH, WW)
    - b: biases of shape (F,)
    - gamma, beta: spatial batch normalization scale and shift, of shape (F,)
    - conv_param: dictionary with 'stride' and 'pad'
    - bn_param: dictionary of spatial_batchnorm_forward ('mode', running statistics...)

    Returns a tuple of:
    - out: output of the ReLU, of shape (N, F, H', W')
    - cache: (conv cache, batchnorm cache, relu cache)
    """
    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    a_bn, bn_cache = spatial_batchnorm_forward(a, gamma, beta, bn_param)
    out, relu_cache = relu_forward(a_bn)
    return out, (conv_cache, bn_cache, relu_cache)


def conv_bn_relu_backward(dout, cache, guided=False):
    """
    Backward pass of conv_bn_relu_forward.

    Inputs:
    - dout: upstream derivative, of shape (N, F, H', W')
    - cache: from conv_bn_relu_forward
    - guided: the ReLU's backward in guided-backpropagation mode (see layers.relu_backward)

    Returns a tuple of:
    - dx: of shape (N, C, H, W); dw: (F, C, HH, WW); db: (F,); dgamma: (F,); dbeta: (F,)
    """
    conv_cache, bn_cache, relu_cache = cache
    da_bn = relu_backward(dout, relu_cache, guided)
    da, dgamma, dbeta = spatial_batchnorm_backward(da_bn, bn_cache)
    dx, dw, db = conv_backward_fast(da, conv_cache)
    return dx, dw, db, dgamma, dbeta


def conv_relu_pool_forward(x, w, b, conv_param, pool_param):
    """
    A convolution, then a ReLU, then max pooling.

    Inputs:
    - x: input of shape (N, C, H, W)
    - w: filters of shape (F, C, HH, WW)
    - b: biases of shape (F,)
    - conv_param: dictionary with 'stride' and 'pad'
    - pool_param: dictionary with 'pool_height', 'pool_width' and 'stride'

    Returns a tuple of:
    - out: output of the pooling, of shape (N, F, H'', W'')
    - cache: (conv cache, relu cache, pool cache)
    """
    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    s, relu_cache = relu_forward(a)
    out, pool_cache = max_pool_forward_fast(s, pool_param)
    return out, (conv_cache, relu_cache, pool_cache)


def conv_relu_pool_backward(dout, cache, guided=False):
    """
    Backward pass of conv_relu_pool_forward.

    Inputs:
    - dout: upstream derivative, of shape (N, F, H'', W'')
    - cache: from conv_relu_pool_forward
    - guided: the ReLU's backward in guided-backpropagation mode (see layers.relu_backward)

    Returns a tuple of:
    - dx: of shape (N, C, H, W); dw: (F, C, HH, WW); db: (F,)
    """
    conv_cache, relu_cache, pool_cache = cache
    ds = max_pool_backward_fast(dout, pool_cache)
    da = relu_backward(ds, relu_cache, guided)
    return conv_backward_fast(da, conv_cache)
