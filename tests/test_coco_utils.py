"""Tests of asgn3/coco_utils.py on a small dataset in the exact COCO captioning layout written by the test:
the keys, dtypes and shapes load_coco_data returns, errors naming the missing or broken file, decoding,
and minibatch sampling."""

import json

import h5py
import numpy as np
import pytest

from asgn3 import coco_utils, data_paths

WORDS = ["<NULL>", "<START>", "<END>", "<UNK>", "a", "cat", "sits", "on", "the", "mat", "dog"]
T = 8


def random_captions(rng, num, num_images):
    """num captions '<START> words <END>' padded with <NULL> to length T, and their image indices."""
    captions = np.zeros((num, T), dtype=np.int64)
    captions[:, 0] = 1
    for row in captions:
        length = rng.integers(1, T - 2)
        row[1 : length + 1] = rng.integers(3, len(WORDS), size=length)
        row[length + 1] = 2
    return captions, rng.integers(num_images, size=num)


def write_layout(base_dir, rng, num_train=(30, 10), num_val=(12, 4), dims=(512, 4096)):
    """Write the COCO captioning files by hand (not with save_coco_data): captions, both feature kinds,
    vocabulary and URL lists. Returns what was written."""
    written = {"idx_to_word": WORDS, "word_to_idx": {w: i for i, w in enumerate(WORDS)}}
    base_dir.mkdir(parents=True, exist_ok=True)
    with h5py.File(base_dir / "coco2014_captions.h5", "w") as f:
        for split, (num_captions, num_images) in (("train", num_train), ("val", num_val)):
            captions, idxs = random_captions(rng, num_captions, num_images)
            f[f"{split}_captions"] = captions  # stored as int64: the loader makes int32
            f[f"{split}_image_idxs"] = idxs
            written[f"{split}_captions"], written[f"{split}_image_idxs"] = captions, idxs
            for dim, suffix in zip(dims, ("_pca", ""), strict=True):
                features = rng.standard_normal((num_images, dim))
                with h5py.File(base_dir / f"{split}2014_vgg16_fc7{suffix}.h5", "w") as g:
                    g["features"] = features
                written[f"{split}_features{suffix}"] = features
            urls = [f"http://farm{i % 9}.example/{split}_{i}.jpg" for i in range(num_images)]
            (base_dir / f"{split}2014_urls.txt").write_text("\n".join(urls) + "\n")
            written[f"{split}_urls"] = urls
    (base_dir / "coco2014_vocab.json").write_text(
        json.dumps({"idx_to_word": WORDS, "word_to_idx": written["word_to_idx"]})
    )
    return written


@pytest.fixture
def coco(tmp_path):
    return tmp_path / "coco_captioning", write_layout(tmp_path / "coco_captioning", np.random.default_rng(0))


def test_load_returns_the_spec_keys_shapes_and_dtypes(coco):
    base_dir, written = coco
    data = coco_utils.load_coco_data(base_dir)
    expected_keys = {
        "train_captions",
        "train_image_idxs",
        "val_captions",
        "val_image_idxs",
        "train_features",
        "val_features",
        "idx_to_word",
        "word_to_idx",
        "train_urls",
        "val_urls",
    }
    assert set(data) == expected_keys
    for split in ("train", "val"):
        assert data[f"{split}_captions"].dtype == np.int32 and data[f"{split}_image_idxs"].dtype == np.int32
        assert np.array_equal(data[f"{split}_captions"], written[f"{split}_captions"])
        assert np.array_equal(data[f"{split}_image_idxs"], written[f"{split}_image_idxs"])
        assert data[f"{split}_features"].dtype == np.float32 and data[f"{split}_features"].shape[1] == 512
        assert np.allclose(data[f"{split}_features"], written[f"{split}_features_pca"])
        assert isinstance(data[f"{split}_urls"], np.ndarray)
        assert list(data[f"{split}_urls"]) == written[f"{split}_urls"]
    assert data["idx_to_word"] == WORDS and isinstance(data["idx_to_word"], list)
    assert data["word_to_idx"]["<NULL>"] == 0 and data["word_to_idx"]["<START>"] == 1
    assert data["word_to_idx"]["<END>"] == 2 and data["word_to_idx"]["<UNK>"] == 3


def test_full_features_without_pca(coco):
    base_dir, written = coco
    data = coco_utils.load_coco_data(base_dir, pca_features=False)
    assert data["train_features"].shape == (10, 4096)
    assert np.allclose(data["val_features"], written["val_features"])


def test_max_train_subsamples_with_replacement_reproducibly(coco):
    base_dir, written = coco
    np.random.seed(1)
    data = coco_utils.load_coco_data(base_dir, max_train=50)  # more than the 30 captions: with replacement
    np.random.seed(1)
    again = coco_utils.load_coco_data(base_dir, max_train=50)
    assert data["train_captions"].shape == (50, T)
    assert np.array_equal(data["train_captions"], again["train_captions"])
    # every sampled caption keeps its own image index
    written_pairs = zip(written["train_captions"], written["train_image_idxs"], strict=True)
    pairs = {(tuple(c), i) for c, i in written_pairs}
    sampled = zip(data["train_captions"], data["train_image_idxs"], strict=True)
    assert all((tuple(c), i) in pairs for c, i in sampled)
    assert len(data["val_captions"]) == 12


def test_default_base_dir_comes_from_data_paths(coco, monkeypatch):
    base_dir, _ = coco
    monkeypatch.setattr(coco_utils, "coco_dir", lambda: base_dir)
    assert coco_utils.load_coco_data()["train_features"].shape == (10, 512)


def test_save_coco_data_round_trips(coco, tmp_path):
    base_dir, _ = coco
    data = coco_utils.load_coco_data(base_dir)
    coco_utils.save_coco_data(data, tmp_path / "copy")
    copy = coco_utils.load_coco_data(tmp_path / "copy")
    for key, value in data.items():
        if isinstance(value, np.ndarray):
            assert np.array_equal(copy[key], value), key
        else:
            assert copy[key] == value, key


@pytest.mark.parametrize(
    "name", ["coco2014_captions.h5", "train2014_vgg16_fc7_pca.h5", "val2014_urls.txt", "coco2014_vocab.json"]
)
def test_missing_file_names_it_and_how_to_get_it(coco, name):
    base_dir, _ = coco
    (base_dir / name).unlink()
    with pytest.raises(FileNotFoundError, match=rf"{name} not found in .*get_coco_captioning\.sh.*default"):
        coco_utils.load_coco_data(base_dir)


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*get_coco_captioning\.sh"):
        coco_utils.load_coco_data(tmp_path / "nowhere")


def test_corrupt_hdf5_names_the_file(coco):
    base_dir, _ = coco
    (base_dir / "val2014_vgg16_fc7_pca.h5").write_bytes(b"this is not an HDF5 file")
    with pytest.raises(ValueError, match=r"val2014_vgg16_fc7_pca\.h5 is not a readable HDF5 file"):
        coco_utils.load_coco_data(base_dir)


def test_missing_or_wrong_shaped_dataset_names_file_and_dataset(coco):
    base_dir, _ = coco
    with h5py.File(base_dir / "coco2014_captions.h5", "a") as f:
        del f["val_image_idxs"]
    with pytest.raises(ValueError, match=r"coco2014_captions\.h5 has no dataset 'val_image_idxs'"):
        coco_utils.load_coco_data(base_dir)
    with h5py.File(base_dir / "coco2014_captions.h5", "a") as f:
        f["val_image_idxs"] = np.zeros((12, 2), dtype=np.int32)
    with pytest.raises(ValueError, match=r"'val_image_idxs' of .*coco2014_captions\.h5 should have shape"):
        coco_utils.load_coco_data(base_dir)


def test_wrong_shaped_features_name_file_and_dataset(coco):
    base_dir, _ = coco
    with h5py.File(base_dir / "train2014_vgg16_fc7_pca.h5", "w") as f:
        f["features"] = np.zeros(10)
    with pytest.raises(ValueError, match=r"'features' of .*train2014_vgg16_fc7_pca\.h5 should have shape"):
        coco_utils.load_coco_data(base_dir)


def test_files_that_do_not_belong_together(coco):
    base_dir, _ = coco
    (base_dir / "train2014_urls.txt").write_text("only one line\n")
    with pytest.raises(ValueError, match=r"train2014_urls\.txt has 1 lines but the train features have 10"):
        coco_utils.load_coco_data(base_dir)
    with h5py.File(base_dir / "train2014_vgg16_fc7_pca.h5", "w") as f:
        f["features"] = np.zeros((3, 512))
    with pytest.raises(ValueError, match=r"train_image_idxs .* but .*train2014_vgg16_fc7_pca\.h5 has 3 rows"):
        coco_utils.load_coco_data(base_dir)


def test_decode_captions():
    idx_to_word = WORDS
    caption = np.array([1, 4, 5, 6, 2, 0, 0, 9])  # words after <END> are ignored
    assert coco_utils.decode_captions(caption, idx_to_word) == "<START> a cat sits <END>"
    two = np.array([[1, 4, 10, 0, 2, 0], [4, 5, 5, 5, 5, 5]])  # <NULL> is skipped; no <END>: up to the end
    assert coco_utils.decode_captions(two, idx_to_word) == ["<START> a dog <END>", "a cat cat cat cat cat"]
    as_dict = {i: w for i, w in enumerate(WORDS)}
    assert coco_utils.decode_captions(caption, as_dict) == "<START> a cat sits <END>"
    with pytest.raises(ValueError, match=r"captions of shape \(T,\) or \(N, T\)"):
        coco_utils.decode_captions(np.zeros((1, 2, 3), dtype=int), idx_to_word)


def test_sample_coco_minibatch_aligns_captions_features_and_urls(coco):
    base_dir, _ = coco
    data = coco_utils.load_coco_data(base_dir)
    for split in ("train", "val"):
        captions, features, urls = coco_utils.sample_coco_minibatch(
            data, batch_size=7, split=split, rng=np.random.default_rng(3)
        )
        assert captions.shape == (7, T) and features.shape == (7, 512) and urls.shape == (7,)
        for c, f, u in zip(captions, features, urls, strict=True):
            rows = np.flatnonzero((data[f"{split}_captions"] == c).all(axis=1))
            images = data[f"{split}_image_idxs"][rows]
            assert any(
                np.array_equal(f, data[f"{split}_features"][i]) and u == data[f"{split}_urls"][i]
                for i in images
            )
    np.random.seed(4)
    first = coco_utils.sample_coco_minibatch(data, batch_size=5)[0]
    np.random.seed(4)
    assert np.array_equal(first, coco_utils.sample_coco_minibatch(data, batch_size=5)[0])
    with pytest.raises(ValueError, match="split must be one of"):
        coco_utils.sample_coco_minibatch(data, split="test")


def test_a_classic_base_dir_that_does_not_exist_means_the_kits_data(coco, monkeypatch, capsys, tmp_path):
    base_dir, _ = coco
    monkeypatch.setenv("ASGN3_DATA", "default")
    monkeypatch.setattr(data_paths, "DEFAULT_COCO_DIR", base_dir)
    monkeypatch.chdir(tmp_path)
    data = coco_utils.load_coco_data("cs231n/datasets/coco_captioning")  # the classic notebooks' path
    assert data["train_features"].shape == (10, 512)
    note = capsys.readouterr().out.strip()
    assert (
        note
        == f"cs231n/datasets/coco_captioning does not exist: using the kit's coco_captioning in {base_dir}"
    )
    with pytest.raises(FileNotFoundError, match="elsewhere"):  # other names stay errors
        coco_utils.load_coco_data("cs231n/datasets/elsewhere")
