"""CaptioningTransformer: generate captions from image features with a Transformer decoder.

The image becomes a few memory vectors (one per grid cell of a spatial feature map, or a single one for a
feature vector); the words so far, embedded and position-encoded, pass through `num_layers` decoder layers
that let each word look at the earlier words (masked self-attention) and at the image (cross-attention);
a temporal affine layer scores the next word. The model has CaptioningRNN's interface, so that
CaptioningSolver trains it unchanged and the decoders of asgn3/classifiers/decoding.py sample from it.
"""

import numpy as np

from asgn3.classifiers.decoding import (
    beam_search,
    check_captions,
    check_sample_options,
    greedy_decode,
    temperature_sampler,
    vocabulary_tokens,
)
from asgn3.rnn_layers import (
    temporal_affine_backward,
    temporal_affine_forward,
    temporal_softmax_loss,
    word_embedding_backward,
    word_embedding_forward,
)
from asgn3.transformer_layers import (
    ATTENTION_KEYS,
    LAYERNORM_NAMES,
    causal_mask,
    decoder_layer_backward,
    decoder_layer_forward,
    positional_encoding,
)

LAYER_MATRICES = ("W1", "b1", "W2", "b2") + tuple(
    f"{name}_{part}" for name in LAYERNORM_NAMES for part in ("gamma", "beta")
)


class CaptioningTransformer:
    """
    A CaptioningTransformer produces captions from image features with a stack of Transformer decoder
    layers.

    Its inputs are image features of dimension D (one vector per image, or P vectors per image: a grid of
    a convolutional feature map), it has a vocabulary of size V, works on sequences of length T, uses word
    vectors (and memory vectors) of dimension W, and operates on minibatches of size N.

    params is a flat dict (as CaptioningSolver wants it): 'W_embed' (V, W), 'W_proj' (D, W), 'b_proj' (W,),
    'W_vocab' (W, V), 'b_vocab' (V,), and for each layer l the decoder-layer params under names such as
    'layer0_self_attn_Wq', 'layer0_cross_attn_bo', 'layer0_W1', 'layer0_ln2_gamma'. No regularization.
    """

    def __init__(
        self,
        word_to_idx,
        input_dim=512,
        wordvec_dim=128,
        num_heads=4,
        num_layers=2,
        max_length=50,
        dim_feedforward=None,
        dtype=np.float32,
        seed=None,
    ):
        """
        Construct a new CaptioningTransformer instance.

        Inputs:
        - word_to_idx: A dictionary giving the vocabulary, as for CaptioningRNN: it must hold '<NULL>';
          without '<START>' the model cannot be sampled from, without '<END>' sampling never stops early.
        - input_dim: Dimension D of the image features (per grid cell for spatial features).
        - wordvec_dim: Dimension W of the word and memory vectors; even, and a multiple of num_heads.
        - num_heads: Number of attention heads.
        - num_layers: Number of decoder layers.
        - max_length: Longest word sequence the model can read (the positional encoding's length).
        - dim_feedforward: Hidden size F of each layer's feed-forward network; None means 4 * W.
        - dtype: numpy datatype; float32 for training, float64 for numeric gradient checks.
        - seed: Seed of the random initialisation; None draws from np.random.
        """
        self._null, self._start, self._end = vocabulary_tokens(word_to_idx)
        if wordvec_dim % 2 or wordvec_dim % num_heads:
            raise ValueError(
                f"wordvec_dim must be even (for the positional encoding) and a multiple of num_heads="
                f"{num_heads}, got {wordvec_dim}"
            )
        if num_layers < 1 or max_length < 1:
            raise ValueError(f"num_layers and max_length must be positive, got {num_layers} and {max_length}")
        self.word_to_idx = word_to_idx
        self.idx_to_word = {i: w for w, i in word_to_idx.items()}
        self.num_heads = num_heads
        self.num_layers = num_layers
        self.max_length = max_length
        self.dtype = dtype
        V, D, W = len(word_to_idx), input_dim, wordvec_dim
        F = 4 * W if dim_feedforward is None else dim_feedforward
        rng = np.random if seed is None else np.random.default_rng(seed)

        def normal(*shape, fan_in):
            return rng.standard_normal(shape) / np.sqrt(fan_in)

        # Word vectors of unit-variance entries, so that words and positions weigh alike at first
        self.params = {"W_embed": normal(V, W, fan_in=1)}
        self.params["W_proj"] = normal(D, W, fan_in=D)
        self.params["b_proj"] = np.zeros(W)
        for layer in range(num_layers):
            for attention in ("self_attn", "cross_attn"):
                for name in ATTENTION_KEYS:
                    shape = (W, W) if name.startswith("W") else (W,)
                    value = normal(*shape, fan_in=W) if name.startswith("W") else np.zeros(W)
                    self.params[f"layer{layer}_{attention}_{name}"] = value
            self.params[f"layer{layer}_W1"] = normal(W, F, fan_in=W / 2)  # He: a ReLU follows
            self.params[f"layer{layer}_b1"] = np.zeros(F)
            self.params[f"layer{layer}_W2"] = normal(F, W, fan_in=F)
            self.params[f"layer{layer}_b2"] = np.zeros(W)
            for name in LAYERNORM_NAMES:
                self.params[f"layer{layer}_{name}_gamma"] = np.ones(W)
                self.params[f"layer{layer}_{name}_beta"] = np.zeros(W)
        self.params["W_vocab"] = normal(W, V, fan_in=W)
        self.params["b_vocab"] = np.zeros(V)
        for k, v in self.params.items():
            self.params[k] = v.astype(dtype)
        self._positions = positional_encoding(max_length, W).astype(dtype)

    # -- Plumbing between the flat params and the nested dicts of the decoder layers -------------------

    def _layer_params(self, layer):
        """The params of one decoder layer, nested as decoder_layer_forward wants them (no copies)."""
        p, prefix = self.params, f"layer{layer}_"
        nested = {name: p[prefix + name] for name in LAYER_MATRICES}
        for attention in ("self_attn", "cross_attn"):
            nested[attention] = {name: p[f"{prefix}{attention}_{name}"] for name in ATTENTION_KEYS}
        return nested

    @staticmethod
    def _flatten_layer_grads(layer, dparams, grads):
        """Store one layer's nested gradients in the flat grads dict, under the params' names."""
        for name, value in dparams.items():
            if isinstance(value, dict):
                for key, grad in value.items():
                    grads[f"layer{layer}_{name}_{key}"] = grad
            else:
                grads[f"layer{layer}_{name}"] = value

    def _check_features(self, features):
        """Features as an array (N, P, D) of the model's dtype ((N, D) becomes P = 1), or a ValueError."""
        features = np.asarray(features, dtype=self.dtype)
        D = self.params["W_proj"].shape[0]
        if features.ndim not in (2, 3) or features.shape[-1] != D or features.shape[-2] == 0:
            raise ValueError(
                f"expected features of shape (N, D) or (N, P, D) with D={D} (the model's input_dim), "
                f"got {features.shape}"
            )
        return features[:, None, :] if features.ndim == 2 else features

    def _check_length(self, T, what="words"):
        """A ValueError when a sequence is longer than the positional encoding."""
        if T > self.max_length:
            raise ValueError(
                f"sequences of {T} {what} are longer than the model's max_length={self.max_length}: "
                f"build the model with a larger max_length"
            )

    def _memory(self, features):
        """The memory vectors (N, P, W): an affine map of each grid cell's features, plus the positional
        encoding of its index (row-major over the grid), so that attention knows where each cell is."""
        self._check_length(features.shape[1], "memory vectors (grid cells)")
        memory, cache = temporal_affine_forward(features, self.params["W_proj"], self.params["b_proj"])
        return memory + self._positions[: features.shape[1]], cache

    # -- Training ----------------------------------------------------------------------------------------

    def loss(self, features, captions):
        """
        Compute the training-time loss and gradients, with CaptioningRNN.loss's contract.

        Inputs:
        - features: image features of shape (N, D), or (N, P, D) for P grid cells
        - captions: ground-truth captions; an integer array of shape (N, T + 1) with entries in [0, V)

        Returns a tuple of:
        - loss: scalar loss (summed over the time steps whose target is not <NULL>, divided by N)
        - grads: dictionary of gradients parallel to self.params
        """
        features = self._check_features(features)
        captions = check_captions(captions, features.shape[0])
        captions_in, captions_out = captions[:, :-1], captions[:, 1:]
        mask = captions_out != self._null
        T = captions_in.shape[1]
        self._check_length(T)

        loss, grads = None, None
        ############################################################################
        # TODO: Implement the forward and backward passes of the Transformer.      #
        # Forward:                                                                 #
        # (1) memory (N, P, W) = self._memory(features): the projected features,   #
        #     plus the positional encoding of the grid cells;                      #
        # (2) embed captions_in (word_embedding_forward with W_embed) and add the  #
        #     positional encoding of the words, self._positions[:T];               #
        # (3) self.num_layers decoder layers (decoder_layer_forward), with the     #
        #     params of layer l from self._layer_params(l), self.num_heads heads   #
        #     and the causal mask causal_mask(T), so that no word sees the future; #
        # (4) vocabulary scores (N, T, V) with a temporal affine layer (W_vocab,   #
        #     b_vocab), and the temporal softmax loss against captions_out with    #
        #     the mask above.                                                      #
        # Backward: the same steps in reverse. Every layer reads the same memory: #
        # its gradient is the sum over the layers. self._flatten_layer_grads      #
        # stores a layer's nested gradients under the flat names of self.params.  #
        ############################################################################
        # *****START OF YOUR CODE*****
        grads = {}
        memory, memory_cache = self._memory(features)
        x, embed_cache = word_embedding_forward(captions_in, self.params["W_embed"])
        x = x + self._positions[:T]
        layer_caches = []
        for layer in range(self.num_layers):
            x, cache = decoder_layer_forward(
                x, memory, self._layer_params(layer), self.num_heads, causal_mask(T)
            )
            layer_caches.append(cache)
        scores, scores_cache = temporal_affine_forward(x, self.params["W_vocab"], self.params["b_vocab"])
        loss, dscores = temporal_softmax_loss(scores, captions_out, mask)

        dx, grads["W_vocab"], grads["b_vocab"] = temporal_affine_backward(dscores, scores_cache)
        dmemory = np.zeros_like(memory)
        for layer in reversed(range(self.num_layers)):
            dx, dmemory_layer, dparams = decoder_layer_backward(dx, layer_caches[layer])
            dmemory += dmemory_layer
            self._flatten_layer_grads(layer, dparams, grads)
        grads["W_embed"] = word_embedding_backward(dx, embed_cache)
        _, grads["W_proj"], grads["b_proj"] = temporal_affine_backward(dmemory, memory_cache)
        # *****END OF YOUR CODE*****
        return loss, grads

    # -- Sampling ----------------------------------------------------------------------------------------

    def _decode(self, memory, words):
        """
        Run the decoder on whole word sequences (no gradient).

        Inputs:
        - memory: (M, P, W) memory vectors
        - words: int array (M, t) of the input words, <START> first

        Returns a tuple of:
        - log_probs: log-softmax of the vocabulary scores at every position, (M, t, V)
        - cross_attention: the last layer's cross-attention weights averaged over heads, (M, t, P)
        """
        t = words.shape[1]
        x = self.params["W_embed"][words] + self._positions[:t]
        for layer in range(self.num_layers):
            x, cache = decoder_layer_forward(
                x, memory, self._layer_params(layer), self.num_heads, causal_mask(t)
            )
        scores, _ = temporal_affine_forward(x, self.params["W_vocab"], self.params["b_vocab"])
        shifted = scores - scores.max(axis=-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        return log_probs, cache["cross_attn"]["weights"].mean(axis=1)

    def _step(self, words, state):
        """One decoding step for asgn3/classifiers/decoding.py: state is (memory, the words so far).

        The causal mask makes the last position's output depend on the earlier words only, so running the
        decoder on the whole prefix again gives the same result as a cache of the earlier positions would.
        """
        memory, so_far = state
        so_far = np.concatenate([so_far, words[:, None].astype(so_far.dtype)], axis=1)
        log_probs, _ = self._decode(memory, so_far)
        return log_probs[:, -1], (memory, so_far)

    def sample(
        self, features, max_length=30, beam_width=1, temperature=None, seed=None, return_attention=False
    ):
        """
        Sample captions for image features: greedy decoding by default, or beam search, or temperature
        sampling, as CaptioningRNN.sample does (asgn3/classifiers/decoding.py holds the shared code).

        Inputs:
        - features: image features of shape (N, D), or (N, P, D)
        - max_length: maximum length T of generated captions (at most the model's max_length)
        - beam_width: number of partial captions kept per image (1: greedy)
        - temperature: None for the most likely word, or a positive float to sample with
        - seed: seed of the random generator used with temperature; None draws from np.random
        - return_attention: also return where the last layer looked when it chose each word

        Returns:
        - captions: int32 array (N, max_length); column 0 holds the first generated word, and a row is
          <NULL> after its <END>
        - weights (only with return_attention=True): float array (N, max_length, P), the last layer's
          cross-attention averaged over heads when it produced each word; rows after <END> are zeros
        """
        features = self._check_features(features)
        check_sample_options(self._start, max_length, beam_width, temperature)
        self._check_length(max_length)
        memory, _ = self._memory(features)
        state = (memory, np.zeros((len(features), 0), dtype=np.int64))
        tokens = (self._start, self._end, self._null)
        if beam_width > 1:
            captions = beam_search(self._step, state, max_length, beam_width, *tokens)
        else:
            choose_word = np.argmax if temperature is None else temperature_sampler(temperature, seed)
            captions = greedy_decode(self._step, state, max_length, *tokens, choose_word=choose_word)
        if not return_attention:
            return captions
        return captions, self._attention_of(memory, captions)

    def _attention_of(self, memory, captions):
        """The last layer's cross-attention (N, T, P) while producing each word of the captions (N, T):
        one pass of the decoder over <START> and the captions' words; rows after <END> are zeros."""
        inputs = np.concatenate([np.full((len(captions), 1), self._start), captions[:, :-1]], axis=1)
        _, weights = self._decode(memory, inputs)
        if self._end is not None:
            is_end = captions == self._end
            ended_before = np.cumsum(is_end, axis=1) - is_end > 0
            weights[ended_before] = 0
        return weights
