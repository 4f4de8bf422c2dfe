"""Tests of datasets/classifier_trainer.py: learns an easy task, keeps the best weights, is deterministic."""

import numpy as np
import pytest

from asgn3.classifiers.pretrained_cnn import PretrainedCNN
from asgn3.gradient_check import eval_numerical_gradient, eval_numerical_gradient_array
from asgn3.layers import softmax_loss
from asgn3.notebook_checks import rel_error
from datasets.classifier_trainer import (
    ClassifierTrainer,
    label_smoothing_loss,
    predict,
    random_flips,
    smoothed_softmax_loss,
    with_weight_decay,
)

ARCH = dict(
    num_classes=3,
    input_size=8,
    num_filters=(4, 8),
    filter_sizes=(3, 3),
    strides=(2, 2),
    pads=(1, 1),
    hidden_dim=16,
)


def blob_data(n, seed):
    """Noisy 8x8 images whose class (0, 1, 2) says which channel holds a bright centre blob."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    X = 0.5 * rng.standard_normal((n, 3, 8, 8)).astype(np.float32)
    X[np.arange(n), y, 2:6, 2:6] += 1.5
    return X, y


def train(seed=0, **kwargs):
    X, y = blob_data(300, seed=1)
    X_val, y_val = blob_data(100, seed=2)
    model = PretrainedCNN(seed=0, **ARCH)
    trainer = ClassifierTrainer()
    options = dict(
        update_rule="adam",
        learning_rate=5e-3,
        lr_decay=0.9,
        batch_size=25,
        num_epochs=4,
        seed=seed,
        verbose=False,
    )
    result = trainer.train(X, y, X_val, y_val, model, model.loss, **{**options, **kwargs})
    return model, trainer, result


def test_learns_an_easy_task_and_decays_the_learning_rate():
    model, trainer, (best_params, loss_history, train_acc, val_acc) = train()
    assert len(loss_history) == 4 * (300 // 25)
    assert len(train_acc) == len(val_acc) == 4
    print("val accuracies", val_acc, "first/last loss", loss_history[0], loss_history[-1])
    assert max(val_acc) >= 0.9
    assert np.mean(loss_history[-12:]) < 0.5 * np.mean(loss_history[:12])
    assert best_params is model.params
    for config in trainer.optim_configs.values():
        assert config["learning_rate"] == pytest.approx(5e-3 * 0.9**4)
    assert all(w.dtype == np.float32 for w in model.params.values())


def test_keeps_the_weights_of_the_best_epoch():
    snapshots = {}

    def remember(epoch, model, acc):
        snapshots[epoch] = (
            {k: v.copy() for k, v in model.params.items()},
            model.bn_params[0]["running_mean"].copy(),
            acc,
        )

    # A large learning rate makes the validation accuracy move up and down between epochs.
    model, trainer, (_, _, _, val_acc) = train(learning_rate=3e-2, lr_decay=1.0, epoch_callback=remember)
    best_epoch = int(np.argmax(val_acc)) + 1
    assert best_epoch < len(val_acc), "the test needs a best epoch before the last one"
    params, running_mean, acc = snapshots[best_epoch]
    assert acc == trainer.best_val_acc == max(val_acc)
    for key in params:
        np.testing.assert_array_equal(model.params[key], params[key])
    np.testing.assert_array_equal(model.bn_params[0]["running_mean"], running_mean)


def test_same_seed_same_run_and_uint8_inputs_work():
    _, _, first = train(seed=5, num_epochs=2, augment_fn=random_flips, max_val=50)
    _, _, second = train(seed=5, num_epochs=2, augment_fn=random_flips, max_val=50)
    assert first[1] == second[1] and first[3] == second[3]
    X, y = blob_data(60, seed=3)
    X_u8 = np.clip(X * 40 + 128, 0, 255).astype(np.uint8)
    model = PretrainedCNN(seed=0, **ARCH)
    ClassifierTrainer().train(X_u8, y, X_u8, y, model, batch_size=20, num_epochs=1, verbose=False)
    assert all(w.dtype == np.float32 for w in model.params.values())


def test_bad_arguments_are_clear_errors():
    X, y = blob_data(10, seed=0)
    model = PretrainedCNN(seed=0, **ARCH)
    with pytest.raises(ValueError, match="invalid update_rule 'adagrad'"):
        ClassifierTrainer().train(X, y, X, y, model, update_rule="adagrad", verbose=False)
    with pytest.raises(ValueError, match=r"X_val \(10, 3, 8, 8\) and y_val \(9,\)"):
        ClassifierTrainer().train(X, y, X, y[:9], model, verbose=False)


def test_smoothed_softmax_loss_value_and_gradient():
    rng = np.random.default_rng(0)
    scores, y = rng.standard_normal((6, 4)), rng.integers(0, 4, size=6)
    loss, dscores = smoothed_softmax_loss(scores, y, 0.2)
    probs = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    targets = np.full((6, 4), 0.05)
    targets[np.arange(6), y] = 0.85
    assert loss == pytest.approx(-np.sum(targets * np.log(probs)) / 6, rel=1e-12)
    numeric = eval_numerical_gradient(lambda s: smoothed_softmax_loss(s, y, 0.2)[0], scores, verbose=False)
    error = rel_error(dscores, numeric)
    print("smoothed softmax loss, dscores relative error", error)
    assert error < 1e-8
    # Without smoothing it is the plain softmax loss.
    plain_loss, plain_dscores = softmax_loss(scores, y)
    loss, dscores = smoothed_softmax_loss(scores, y, 0.0)
    assert loss == pytest.approx(plain_loss, rel=1e-12)
    np.testing.assert_allclose(dscores, plain_dscores, atol=1e-14)


def test_label_smoothing_loss_backpropagates_through_the_model():
    X, y = blob_data(5, seed=6)
    model = PretrainedCNN(seed=0, dtype=np.float64, **ARCH)
    loss_fn = label_smoothing_loss(model, 0.1)
    np.testing.assert_array_equal(loss_fn(X), model.loss(X))  # scores: the test-mode forward
    # Train-mode batchnorm updates the running statistics, which the loss does not read: a clean check.
    _, grads = loss_fn(X, y)
    # The first filters: the gradient passes through every layer.
    W = model.params["W1"]
    numeric = eval_numerical_gradient(lambda _: loss_fn(X, y)[0], W, verbose=False)
    error = rel_error(grads["W1"], numeric)
    print("label smoothing through the model, dW1 relative error", error)
    assert error < 1e-7


def test_weight_decay_penalises_the_weight_arrays_only():
    X, y = blob_data(5, seed=7)
    model = PretrainedCNN(seed=0, dtype=np.float64, **ARCH)
    decayed = with_weight_decay(model.loss, model, 0.3)
    loss, grads = decayed(X, y)
    plain_loss, plain_grads = model.loss(X, y)
    weights = [name for name, w in model.params.items() if w.ndim >= 2]
    assert sorted(weights) == ["W1", "W2", "W3", "W4"]
    penalty = 0.15 * sum(np.sum(model.params[name] ** 2) for name in weights)
    assert loss == pytest.approx(plain_loss + penalty, rel=1e-10)
    for name, grad in grads.items():
        extra = 0.3 * model.params[name] if name in weights else 0.0
        np.testing.assert_allclose(grad, plain_grads[name] + extra, rtol=1e-10, atol=1e-12)
    W = model.params["W2"]
    numeric = eval_numerical_gradient_array(lambda _: decayed(X, y)[0], W, np.ones(()))
    error = rel_error(grads["W2"], numeric)
    print("weight decay, dW2 relative error", error)
    assert error < 1e-7
    np.testing.assert_array_equal(decayed(X), model.loss(X))


def test_cosine_schedule_and_weight_decay_in_training():
    model, trainer, (_, _, _, val_acc) = train(
        update_rule="sgd_momentum", learning_rate=0.05, lr_schedule="cosine", weight_decay=1e-3
    )
    print("val accuracies", val_acc)
    assert max(val_acc) >= 0.9
    for config in trainer.optim_configs.values():
        assert config["learning_rate"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        train(lr_schedule="step")


def test_random_flips_flips_about_half_and_leaves_the_input_alone():
    X = np.arange(200 * 2 * 3 * 4, dtype=np.float32).reshape(200, 2, 3, 4)
    original = X.copy()
    out = random_flips(X, np.random.default_rng(0))
    np.testing.assert_array_equal(X, original)
    flipped = np.all(out == X[:, :, :, ::-1], axis=(1, 2, 3))
    kept = np.all(out == X, axis=(1, 2, 3))
    assert np.all(flipped ^ kept)
    assert 70 < flipped.sum() < 130


def test_predict_in_batches_equals_one_call():
    X, _ = blob_data(53, seed=4)
    model = PretrainedCNN(seed=0, **ARCH)
    np.testing.assert_array_equal(predict(model.loss, X, batch_size=10), np.argmax(model.loss(X), axis=1))
