"""Dataset loading: IDX reader on tiny files written here, look-up order, errors, digits, real FMNIST."""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

from fedakd import data
from fedakd.data import DataError, ensure_dataset, load_dataset, load_train_labels, read_idx

FMNIST_SYSTEM_FOLDER = Path("/usr/share/datasets/fashion-mnist")
IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def write_idx(path: Path, array: np.ndarray, gz: bool = True, magic: bytes | None = None) -> Path:
    """Write an unsigned-byte IDX file: 0, 0, type 0x08, ndim, then big-endian int32 dims, then data."""
    header = magic if magic is not None else bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(dim).to_bytes(4, "big") for dim in array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def write_tiny_mnist_set(folder: Path, n_train=6, n_test=4, gz=True, fill: int | None = None) -> dict:
    """Four tiny 28x28 IDX files in ``folder``; returns the arrays written."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        if fill is not None:
            images[:] = fill
        labels = (np.arange(n) % 10).astype(np.uint8)
        images_stem, labels_stem = IDX_STEMS[split]
        suffix = ".gz" if gz else ""
        write_idx(folder / f"{images_stem}{suffix}", images, gz=gz)
        write_idx(folder / f"{labels_stem}{suffix}", labels, gz=gz)
        arrays[split] = (images, labels)
    return arrays


@pytest.fixture
def no_system_data(tmp_path, monkeypatch):
    """Hide /usr/share/datasets so only the test's own files are found."""
    empty = tmp_path / "empty-prefix"
    empty.mkdir()
    monkeypatch.setattr(data, "SYSTEM_PREFIXES", (empty,))
    return empty


# ---------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trips_images_and_labels(tmp_path, gz):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([7, 0, 255], dtype=np.uint8)
    assert_array_equal(read_idx(write_idx(tmp_path / "img", images, gz=gz), ndim=3), images)
    assert_array_equal(read_idx(write_idx(tmp_path / "lab", labels, gz=gz), ndim=1), labels)


def test_truncated_gzip_names_the_file(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((5, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz.*truncated"):
        read_idx(path, ndim=3)


def test_truncated_decompressed_file_reports_byte_counts(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8), gz=False)
    path.write_bytes(path.read_bytes()[:-1])
    # header 4 + 3*4 = 16 bytes, data 2*28*28 = 1568 bytes: 1584 expected, 1583 present.
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*1584 bytes.*1583 bytes.*truncated"):
        read_idx(path, ndim=3)
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*10 bytes is shorter than the 16-byte header"):
        read_idx(path, ndim=3)


def test_wrong_magic_names_the_file_and_both_numbers(tmp_path):
    # A labels file (magic 0x00000801) read where images (0x00000803) are expected.
    path = write_idx(tmp_path / "labels-as-images", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match=r"labels-as-images.*0x00000801.*0x00000803"):
        read_idx(path, ndim=3)
    float_typed = write_idx(tmp_path / "floats", np.zeros(4, np.uint8), magic=bytes([0, 0, 0x0D, 1]))
    with pytest.raises(DataError, match=r"floats.*0x00000d01"):
        read_idx(float_typed, ndim=1)


def test_image_label_count_mismatch_names_both_files(tmp_path, no_system_data):
    raw = tmp_path / "FashionMNIST" / "raw"
    write_tiny_mnist_set(raw, n_train=6)
    write_idx(raw / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(DataError, match=r"6 images.*train-labels-idx1-ubyte\.gz holds 5 labels"):
        load_dataset("fashion-mnist", tmp_path)


def test_label_out_of_range_is_refused(tmp_path, no_system_data):
    raw = tmp_path / "FashionMNIST" / "raw"
    write_tiny_mnist_set(raw)
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.array([0, 1, 2, 10], np.uint8))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz.*label 10 is outside 0\.\.9"):
        load_dataset("fashion-mnist", tmp_path)


# ---------------------------------------------------------------- look-up order and loading


@pytest.mark.parametrize("gz", [True, False])
def test_tiny_fashion_mnist_loads_as_normalised_tensors(tmp_path, no_system_data, gz):
    written = write_tiny_mnist_set(tmp_path / "FashionMNIST" / "raw", gz=gz)
    dataset = load_dataset("fashion-mnist", tmp_path)
    assert dataset.x_train.shape == (6, 1, 28, 28) and dataset.x_test.shape == (4, 1, 28, 28)
    assert dataset.x_train.dtype == torch.float32 and dataset.y_train.dtype == torch.int64
    assert dataset.num_classes == 10 and dataset.in_shape == (1, 28, 28)
    assert dataset.class_names[0] == "T-shirt/top"
    images, labels = written["train"]
    assert_array_equal(dataset.y_train.numpy(), labels)
    assert_allclose(dataset.x_train[:, 0].numpy(), (images / 255.0 - 0.2860) / 0.3530, rtol=0, atol=1e-5)
    assert_array_equal(load_train_labels("fashion-mnist", tmp_path), labels)


def test_pixel_extremes_map_to_hand_computed_values(tmp_path, no_system_data):
    # (0/255 - 0.2860) / 0.3530 = -0.8101983, (255/255 - 0.2860) / 0.3530 = 0.714 / 0.353 = 2.0226629
    write_tiny_mnist_set(tmp_path / "FashionMNIST" / "raw", fill=0)
    assert_allclose(load_dataset("fashion-mnist", tmp_path).x_train.unique().numpy(), [-0.8101983], atol=1e-6)
    write_tiny_mnist_set(tmp_path / "FashionMNIST" / "raw", fill=255)
    assert_allclose(load_dataset("fashion-mnist", tmp_path).x_train.unique().numpy(), [2.0226629], atol=1e-6)


def test_lookup_order_root_torchvision_layout_then_root_folder_then_system(tmp_path, monkeypatch):
    prefix = tmp_path / "prefix"
    monkeypatch.setattr(data, "SYSTEM_PREFIXES", (tmp_path / "no-such-prefix", prefix))
    root = tmp_path / "root"
    system_folder = prefix / "share" / "datasets" / "fashion-mnist"
    write_tiny_mnist_set(system_folder)
    assert ensure_dataset("fashion-mnist", root, download=False)["source"] == str(system_folder)
    write_tiny_mnist_set(root / "fashion-mnist")
    assert ensure_dataset("fashion-mnist", root, download=False)["source"] == str(root / "fashion-mnist")
    write_tiny_mnist_set(root / "FashionMNIST" / "raw", gz=False)
    assert ensure_dataset("fashion-mnist", root, download=False)["source"] == str(root / "FashionMNIST" / "raw")


def test_incomplete_folder_is_skipped(tmp_path, no_system_data):
    write_tiny_mnist_set(tmp_path / "FashionMNIST" / "raw")
    (tmp_path / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte.gz").unlink()
    write_tiny_mnist_set(tmp_path / "fashion-mnist")
    assert ensure_dataset("fashion-mnist", tmp_path, download=False)["source"] == str(tmp_path / "fashion-mnist")


def test_ensure_dataset_records_counts_and_file_hashes(tmp_path, no_system_data):
    folder = tmp_path / "MNIST" / "raw"
    write_tiny_mnist_set(folder, n_train=7, n_test=3)
    record = ensure_dataset("mnist", tmp_path, download=False)
    assert record["name"] == "mnist" and (record["n_train"], record["n_test"]) == (7, 3)
    assert record["files"] == {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.iterdir()
    }


def test_missing_data_without_download_says_how_to_get_it(tmp_path, no_system_data):
    with pytest.raises(DataError) as error:
        load_dataset("fashion-mnist", tmp_path / "data", download=False)
    message = str(error.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert str(tmp_path / "data" / "FashionMNIST" / "raw") in message
    assert str(no_system_data / "share" / "datasets" / "fashion-mnist") in message
    assert "download allowed" in message
    with pytest.raises(DataError, match=r"MNIST[/\\]raw"):
        load_train_labels("mnist", tmp_path, download=False)


def test_download_goes_through_torchvision_into_the_root(tmp_path, no_system_data, monkeypatch):
    import torchvision.datasets

    calls = []

    def fake_fashion_mnist(root, train, download):
        calls.append((root, train, download))
        write_tiny_mnist_set(Path(root) / "FashionMNIST" / "raw")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", fake_fashion_mnist)
    dataset = load_dataset("fashion-mnist", tmp_path, download=True)
    assert calls == [(str(tmp_path), True, True)] and len(dataset.y_train) == 6


def test_failed_download_is_one_clear_error(tmp_path, no_system_data, monkeypatch):
    import torchvision.datasets

    def unreachable(root, train, download):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", unreachable)
    with pytest.raises(DataError, match=r"downloading fashion-mnist .*network is unreachable.*apt-get install"):
        ensure_dataset("fashion-mnist", tmp_path, download=True)


def test_missing_cifar_without_download_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match=r"cifar-10-batches-py.*download was not allowed.*download allowed"):
        load_train_labels("cifar10", tmp_path, download=False)


def test_cifar_becomes_channels_first_and_normalised_per_channel(tmp_path):
    from tests.helpers import write_tiny_cifar10

    write_tiny_cifar10(tmp_path, train_per_class=1, test_per_class=1, fill={0: 255, 1: 0, 2: 255})  # magenta
    dataset = load_dataset("cifar10", tmp_path)
    assert dataset.x_train.shape == (10, 3, 32, 32) and dataset.x_test.shape == (10, 3, 32, 32)
    # (1 - 0.4914) / 0.2470 = 2.0591093, (0 - 0.4822) / 0.2435 = -1.9802875, (1 - 0.4465) / 0.2616 = 2.1158257
    per_channel = [dataset.x_train[:, channel].unique().item() for channel in range(3)]
    assert_allclose(per_channel, [2.0591093, -1.9802875, 2.1158257], atol=1e-6)
    assert sorted(load_train_labels("cifar10", tmp_path).tolist()) == list(range(10))
    assert_array_equal(load_train_labels("cifar10", tmp_path), dataset.y_train.numpy())


def test_a_cifar_batch_that_is_not_one_is_refused_naming_it(tmp_path):
    from tests.helpers import write_tiny_cifar10

    folder = write_tiny_cifar10(tmp_path, train_per_class=1, test_per_class=1)
    (folder / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"data_batch_3 is not a batch of the official archive"):
        load_dataset("cifar10", tmp_path)
    import os
    import pickle

    class Payload:  # a pickle that would run a command when loaded
        def __reduce__(self):
            return (os.system, ("echo owned",))

    (folder / "data_batch_3").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(DataError, match=r"posix.system is not part of a CIFAR batch|system is not part of a CIFAR"):
        load_dataset("cifar10", tmp_path)


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(DataError, match=r"'svhn'.*cifar10, cifar100, digits, fashion-mnist, mnist"):
        data.dataset_spec("svhn")
    with pytest.raises(DataError, match="svhn"):
        load_dataset("svhn", "data")


def test_specs_are_consistent():
    for name, spec in data.DATASETS.items():
        assert spec.name == name
        assert len(spec.class_names) == spec.num_classes == len(set(spec.class_names))
        assert len(spec.mean) == len(spec.std) == spec.in_shape[0]
    # CIFAR-100's meta file lists the fine labels alphabetically.
    assert list(data.DATASETS["cifar100"].class_names) == sorted(data.DATASETS["cifar100"].class_names)


def test_importing_the_module_loads_no_heavy_library():
    code = "import sys, fedakd.data; print(sorted({'torch', 'torchvision', 'sklearn'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- digits


def test_digits_shapes_split_and_normalisation():
    dataset = load_dataset("digits", "unused")
    # 1797 examples, test 25 %: ceil(0.25 * 1797) = 450, train 1347.
    assert dataset.x_train.shape == (1347, 1, 8, 8) and dataset.x_test.shape == (450, 1, 8, 8)
    assert dataset.x_train.dtype == torch.float32 and dataset.y_test.dtype == torch.int64
    assert dataset.num_classes == 10
    # Stratified: each class has 174..183 examples, so 43..46 of them in the test split.
    test_counts = np.bincount(dataset.y_test.numpy(), minlength=10)
    assert test_counts.min() >= 43 and test_counts.max() <= 46
    # The fixed constants were measured on this training split.
    assert abs(dataset.x_train.mean().item()) < 1e-3 and abs(dataset.x_train.std().item() - 1) < 1e-3
    # Undoing the normalisation gives the original integer counts 0..16.
    counts = (dataset.x_train * 0.3760 + 0.3052) * 16
    assert_allclose(counts.numpy(), counts.round().numpy(), atol=1e-4)
    assert counts.round().min() == 0 and counts.round().max() == 16


def test_digits_is_deterministic_and_labels_match():
    first, second = load_dataset("digits", "a"), load_dataset("digits", "b")
    assert torch.equal(first.x_train, second.x_train) and torch.equal(first.y_test, second.y_test)
    assert_array_equal(load_train_labels("digits", "a"), first.y_train.numpy())
    record = ensure_dataset("digits", "a")
    assert (record["n_train"], record["n_test"]) == (1347, 450) and list(record["files"]) == ["digits.csv.gz"]


# ---------------------------------------------------------------- the real Fashion-MNIST


@pytest.mark.fmnist
@pytest.mark.skipif(not FMNIST_SYSTEM_FOLDER.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist(tmp_path):
    dataset = load_dataset("fashion-mnist", tmp_path / "empty-root")
    assert dataset.x_train.shape == (60000, 1, 28, 28) and dataset.x_test.shape == (10000, 1, 28, 28)
    assert_array_equal(np.bincount(dataset.y_train.numpy()), [6000] * 10)
    assert_array_equal(np.bincount(dataset.y_test.numpy()), [1000] * 10)
    assert abs(dataset.x_train.mean().item()) < 0.01 and abs(dataset.x_train.std().item() - 1) < 0.01
