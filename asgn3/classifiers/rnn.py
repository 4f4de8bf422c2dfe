"""CaptioningRNN: generate captions from image features with a vanilla RNN or an LSTM."""

import numpy as np

from asgn3.classifiers.decoding import (
    beam_search,
    check_captions,
    check_sample_options,
    greedy_decode,
    temperature_sampler,
    vocabulary_tokens,
)
from asgn3.layers import affine_backward, affine_forward
from asgn3.rnn_layers import (
    lstm_backward,
    lstm_forward,
    lstm_step_forward,
    rnn_backward,
    rnn_forward,
    rnn_step_forward,
    temporal_affine_backward,
    temporal_affine_forward,
    temporal_softmax_loss,
    word_embedding_backward,
    word_embedding_forward,
)

CELL_TYPES = ("rnn", "lstm")


class CaptioningRNN:
    """
    A CaptioningRNN produces captions from image features using a recurrent neural network.

    The RNN receives input vectors of size D, has a vocab size of V, works on sequences of length T,
    has an RNN hidden dimension of H, uses word vectors of dimension W, and operates on minibatches of
    size N.

    Note that we don't use any regularization for the CaptioningRNN.
    """

    def __init__(
        self,
        word_to_idx,
        input_dim=512,
        wordvec_dim=128,
        hidden_dim=128,
        cell_type="rnn",
        dtype=np.float32,
        seed=None,
    ):
        """
        Construct a new CaptioningRNN instance.

        Inputs:
        - word_to_idx: A dictionary giving the vocabulary. It contains V entries, and maps each string
          to a unique integer in the range [0, V). It must hold '<NULL>'; without '<START>' the model
          can be trained but not sampled from, and without '<END>' sampling never stops early. V is
          len(word_to_idx); the indices need not be contiguous, but captions may only use indices < V.
        - input_dim: Dimension D of input image feature vectors.
        - wordvec_dim: Dimension W of word vectors.
        - hidden_dim: Dimension H for the hidden state of the RNN.
        - cell_type: What type of RNN to use; either 'rnn' or 'lstm'.
        - dtype: numpy datatype to use; use float32 for training and float64 for numeric gradient checking.
        - seed: seed of the random initial weights; None draws them from np.random, so that
          np.random.seed makes the model reproducible, as in the classic kit.
        """
        if cell_type not in CELL_TYPES:
            raise ValueError(f"cell_type must be one of {CELL_TYPES}, got {cell_type!r}")
        self._null, self._start, self._end = vocabulary_tokens(word_to_idx)
        self.cell_type = cell_type
        self.dtype = dtype
        self.word_to_idx = word_to_idx
        self.idx_to_word = {i: w for w, i in word_to_idx.items()}
        self.params = {}

        vocab_size = len(word_to_idx)

        rng = np.random if seed is None else np.random.default_rng(seed)
        # Initialize word vectors
        self.params["W_embed"] = rng.standard_normal((vocab_size, wordvec_dim)) / 100

        # Initialize CNN -> hidden state projection parameters
        self.params["W_proj"] = rng.standard_normal((input_dim, hidden_dim)) / np.sqrt(input_dim)
        self.params["b_proj"] = np.zeros(hidden_dim)

        # Initialize parameters for the RNN; the LSTM has four gates, so four times the columns
        dim_mul = {"lstm": 4, "rnn": 1}[cell_type]
        self.params["Wx"] = rng.standard_normal((wordvec_dim, dim_mul * hidden_dim)) / np.sqrt(wordvec_dim)
        self.params["Wh"] = rng.standard_normal((hidden_dim, dim_mul * hidden_dim)) / np.sqrt(hidden_dim)
        self.params["b"] = np.zeros(dim_mul * hidden_dim)

        # Initialize output to vocab weights
        self.params["W_vocab"] = rng.standard_normal((hidden_dim, vocab_size)) / np.sqrt(hidden_dim)
        self.params["b_vocab"] = np.zeros(vocab_size)

        # Cast parameters to correct dtype
        for k, v in self.params.items():
            self.params[k] = v.astype(self.dtype)

    def _check_features(self, features):
        """Return features as an array of the model's dtype, or raise a ValueError naming the shape."""
        features = np.asarray(features, dtype=self.dtype)
        D = self.params["W_proj"].shape[0]
        if features.ndim != 2 or features.shape[1] != D:
            raise ValueError(
                f"expected features of shape (N, D) with D={D} (the model's input_dim), got {features.shape}"
            )
        return features

    def loss(self, features, captions):
        """
        Compute training-time loss for the RNN. We input image features and ground-truth captions for
        those images, and use an RNN (or LSTM) to compute loss and gradients on all parameters.

        Inputs:
        - features: Input image features, of shape (N, D)
        - captions: Ground-truth captions; an integer array of shape (N, T + 1) where each element is
          in the range 0 <= y[i, t] < V

        Returns a tuple of:
        - loss: Scalar loss
        - grads: Dictionary of gradients parallel to self.params
        """
        features = self._check_features(features)
        captions = check_captions(captions, features.shape[0])

        # Cut captions into two pieces: captions_in has everything but the last word and will be input
        # to the RNN; captions_out has everything but the first word and this is what we will expect
        # the RNN to generate. These are offset by one relative to each other because the RNN should
        # produce word (t+1) after receiving word t. The first element of captions_in will be the START
        # token, and the first element of captions_out will be the first word.
        captions_in = captions[:, :-1]
        captions_out = captions[:, 1:]

        # You'll need this
        mask = captions_out != self._null

        # Weight and bias for the affine transform from image features to initial hidden state
        W_proj, b_proj = self.params["W_proj"], self.params["b_proj"]

        # Word embedding matrix
        W_embed = self.params["W_embed"]

        # Input-to-hidden, hidden-to-hidden, and biases for the RNN
        Wx, Wh, b = self.params["Wx"], self.params["Wh"], self.params["b"]

        # Weight and bias for the hidden-to-vocab transformation.
        W_vocab, b_vocab = self.params["W_vocab"], self.params["b_vocab"]

        loss, grads = None, None
        ############################################################################
        # TODO: Implement the forward and backward passes for the CaptioningRNN.   #
        # In the forward pass you will need to do the following:                   #
        # (1) Use an affine transformation to compute the initial hidden state     #
        #     from the image features. This should produce an array of shape (N, H)#
        # (2) Use a word embedding layer to transform the words in captions_in     #
        #     from indices to vectors, giving an array of shape (N, T, W).         #
        # (3) Use either a vanilla RNN or LSTM (depending on self.cell_type) to    #
        #     process the sequence of input word vectors and produce hidden state  #
        #     vectors for all timesteps, producing an array of shape (N, T, H).    #
        # (4) Use a (temporal) affine transformation to compute scores over the    #
        #     vocabulary at every timestep using the hidden states, giving an      #
        #     array of shape (N, T, V).                                            #
        # (5) Use (temporal) softmax to compute loss using captions_out, ignoring  #
        #     the points where the output word is <NULL> using the mask above.     #
        #                                                                          #
        # In the backward pass you will need to compute the gradient of the loss   #
        # with respect to all model parameters. Use the loss and grads variables   #
        # defined above to store loss and gradients; grads[k] should give the      #
        # gradients for self.params[k].                                            #
        ############################################################################
        # *****START OF YOUR CODE*****
        grads = {}
        h0, proj_cache = affine_forward(features, W_proj, b_proj)
        x, embed_cache = word_embedding_forward(captions_in, W_embed)
        if self.cell_type == "rnn":
            h, cell_cache = rnn_forward(x, h0, Wx, Wh, b)
        else:
            h, cell_cache = lstm_forward(x, h0, Wx, Wh, b)
        scores, scores_cache = temporal_affine_forward(h, W_vocab, b_vocab)
        loss, dscores = temporal_softmax_loss(scores, captions_out, mask)

        dh, grads["W_vocab"], grads["b_vocab"] = temporal_affine_backward(dscores, scores_cache)
        cell_backward = rnn_backward if self.cell_type == "rnn" else lstm_backward
        dx, dh0, grads["Wx"], grads["Wh"], grads["b"] = cell_backward(dh, cell_cache)
        grads["W_embed"] = word_embedding_backward(dx, embed_cache)
        _, grads["W_proj"], grads["b_proj"] = affine_backward(dh0, proj_cache)
        # *****END OF YOUR CODE*****
        return loss, grads

    def sample(self, features, max_length=30, beam_width=1, temperature=None, seed=None):
        """
        Run a test-time forward pass for the model, sampling captions for input feature vectors.

        At each timestep, we embed the current word, pass it and the previous hidden state to the RNN to
        get the next hidden state, use the hidden state to get scores for all vocab words (one call of
        _decode_step, which you write), and choose the word with the highest score as the next word
        (greedy decoding; the loop is asgn3/classifiers/decoding.py's, shared with the Transformer). The
        initial hidden state is computed by applying an affine transform to the input image features, and
        the initial word is the <START> token. For LSTMs the initial cell state is zero. A row stops after
        its <END> word: the rest of it stays <NULL>.

        Beyond greedy decoding:
        - beam_width=k > 1 keeps the k most likely partial captions (by summed log-probability) per image
          and returns the best finished one; beam_width=1 is greedy decoding.
        - temperature=t > 0 samples each word from softmax(scores / t) instead of taking the argmax
          (t < 1 sharpens, t > 1 flattens the distribution); seed makes the draw reproducible.

        Inputs:
        - features: Array of input image features of shape (N, D).
        - max_length: Maximum length T of generated captions.
        - beam_width: Number of partial captions kept per image (1: greedy).
        - temperature: None for the most likely word, or a positive float to sample with.
        - seed: Seed of the random generator used with temperature.

        Returns:
        - captions: Array of shape (N, max_length) giving sampled captions, where each element is an
          integer in the range [0, V). The first element of captions should be the first sampled word,
          not the <START> token.
        """
        features = self._check_features(features)
        check_sample_options(self._start, max_length, beam_width, temperature)
        state = self._initial_state(features)
        if beam_width > 1:
            return beam_search(self._step, state, max_length, beam_width, *self._tokens())
        choose_word = np.argmax if temperature is None else temperature_sampler(temperature, seed)
        return greedy_decode(self._step, state, max_length, *self._tokens(), choose_word=choose_word)

    def _initial_state(self, features):
        """The hidden state (N, H) projected from the features (N, D), and a zero cell state (N, H)."""
        h, _ = affine_forward(features, self.params["W_proj"], self.params["b_proj"])
        return h, np.zeros_like(h)

    def _decode_step(self, words, h, c):
        """
        Feed one word per row through the embedding, one cell step and the vocabulary layer.

        Inputs:
        - words: int array (M,) of the current words
        - h, c: hidden and cell states (M, H); the vanilla RNN ignores c and returns it unchanged

        Returns a tuple of:
        - log_probs: log-softmax of the vocabulary scores, shape (M, V)
        - h, c: the next hidden and cell states (M, H)
        """
        p = self.params
        log_probs = None
        ###########################################################################
        # TODO: One decoding step, for greedy decoding and beam search alike.     #
        # Embed the words (p["W_embed"]), make one step of the cell               #
        # (rnn_step_forward or lstm_step_forward, following self.cell_type, with  #
        # p["Wx"], p["Wh"], p["b"]), compute the vocabulary scores (M, V) with    #
        # p["W_vocab"], p["b_vocab"], and turn them into log-probabilities with a #
        # numerically stable log-softmax (subtract each row's maximum first).     #
        ###########################################################################
        # *****START OF YOUR CODE*****
        x = p["W_embed"][words]
        if self.cell_type == "rnn":
            h, _ = rnn_step_forward(x, h, p["Wx"], p["Wh"], p["b"])
        else:
            h, c, _ = lstm_step_forward(x, h, c, p["Wx"], p["Wh"], p["b"])
        scores = h @ p["W_vocab"] + p["b_vocab"]
        shifted = scores - scores.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        # *****END OF YOUR CODE*****
        return log_probs, h, c

    # -- The shared decoders (asgn3/classifiers/decoding.py) run the student's decoding step -------------

    def _step(self, words, state):
        """_decode_step in the form the shared decoders call: state is the pair (h, c)."""
        log_probs, h, c = self._decode_step(words, *state)
        return log_probs, (h, c)

    def _tokens(self):
        """The indices of '<START>', '<END>' and '<NULL>', in the order the shared decoders take them."""
        return self._start, self._end, self._null
