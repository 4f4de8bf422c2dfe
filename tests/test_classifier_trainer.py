"""Tests of datasets/classifier_trainer.py: learns an easy task, keeps the best weights, is deterministic."""

import numpy as np
import pytest

from asgn3.classifiers.pretrained_cnn import PretrainedCNN
from datasets.classifier_trainer import ClassifierTrainer, predict, random_flips

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
