"""Average the weights of PretrainedCNN files of one architecture (uniform weight averaging).

Networks fine-tuned from the same starting point lie in one basin of the loss, and the mean of their weights
is usually at least as good as each of them and smoother (Izmailov et al. 2018, stochastic weight averaging;
Wortsman et al. 2022, model soups). The batchnorm running statistics are averaged the same way, or measured
again on training images (recompute_batchnorm_statistics), as train_default_model's --average-last does
for the weights of a run's last epochs. The shipped default CNN is such an average (README,
datasets/pretrained/default_pretrained_model.txt).

Usage (from the kit's folder):
    python -m datasets.average_weights OUT.h5 IN1.h5 IN2.h5 [...]
"""

import argparse
import copy
from pathlib import Path

import numpy as np

from asgn3.classifiers.pretrained_cnn import PretrainedCNN
from datasets.checksum import write_checksum


def average_models(models):
    """
    The uniform average of PretrainedCNNs of one architecture.

    Inputs:
    - models: list of at least one PretrainedCNN, all with the same parameter names and shapes.

    Returns a new PretrainedCNN (a copy of the first model) whose every parameter and batchnorm
    running statistic is the mean of the models', in the first model's dtype.
    """
    if not models:
        raise ValueError("average_models needs at least one model")
    first = models[0]
    for k, model in enumerate(models[1:], start=2):
        if _architecture(model) != _architecture(first):
            raise ValueError(
                f"model {k} has another architecture than model 1 (shapes, strides or pads differ): "
                "only networks of one architecture, e.g. fine-tuned from the same file, can be averaged"
            )
    average = copy.deepcopy(first)
    for name in average.params:
        average.params[name] = np.mean([m.params[name] for m in models], axis=0).astype(first.dtype)
    for i, bn_param in enumerate(average.bn_params):
        for key in ("running_mean", "running_var"):
            bn_param[key] = np.mean([m.bn_params[i][key] for m in models], axis=0).astype(first.dtype)
    return average


def recompute_batchnorm_statistics(model, X, batch_size=100, seed=0):
    """
    Set every batchnorm layer's running mean and variance to the mean, over random batches of X, of its
    batch statistics in train mode. Averaged weights need this: the average of the networks' running
    statistics is not the statistics of the averaged network's own activations (Izmailov et al. 2018
    recompute them the same way after stochastic weight averaging). The batches are drawn at random, as in
    training: batches of consecutive images of a class-sorted X would each see one class, and the mean of
    their variances would miss the spread between the classes.

    Inputs:
    - model: a PretrainedCNN; its bn_params are replaced, nothing else changes.
    - X: images (N, C, H, W) to measure on (the training images, without augmentation), N >= batch_size.
    - batch_size: images per train-mode forward pass; every batch counts the same, the N % batch_size
      images left over by the shuffle are not used.
    - seed: seed of the shuffle.

    Returns the model.
    """
    num_batches = len(X) // batch_size
    if num_batches < 1:
        raise ValueError(
            f"recompute_batchnorm_statistics needs at least batch_size={batch_size} images; got {len(X)}"
        )
    momenta = [bn_param.pop("momentum", None) for bn_param in model.bn_params]  # put back at the end
    for bn_param in model.bn_params:
        bn_param["running_mean"] = np.zeros_like(bn_param["running_mean"])
        bn_param["running_var"] = np.zeros_like(bn_param["running_var"])
    order = np.random.default_rng(seed).permutation(len(X))
    for k in range(num_batches):
        # running = momentum * running + (1 - momentum) * batch statistic: with momentum k / (k + 1) the
        # running value after batch k is the mean of the statistics of batches 0..k
        for bn_param in model.bn_params:
            bn_param["momentum"] = k / (k + 1)
        model.forward(X[np.sort(order[k * batch_size : (k + 1) * batch_size])], mode="train")
    for bn_param, momentum in zip(model.bn_params, momenta, strict=True):
        del bn_param["momentum"]
        if momentum is not None:
            bn_param["momentum"] = momentum
    return model


def _architecture(model):
    """What must agree for two networks' weights to be averaged: shapes, strides, pads, dtype."""
    return model.param_shapes(), [(cp["stride"], cp["pad"]) for cp in model.conv_params], model.dtype


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the averaged weights (HDF5, classic layout)")
    parser.add_argument("inputs", type=Path, nargs="+", help="weights files of one architecture")
    args = parser.parse_args()
    average = average_models([PretrainedCNN(h5_file=path) for path in args.inputs])
    average.save_weights(args.out)
    digest = write_checksum(args.out)
    print(f"{args.out}: the average of {len(args.inputs)} models, sha256 {digest}")


if __name__ == "__main__":
    main()
