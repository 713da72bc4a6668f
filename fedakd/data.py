"""Datasets as whole, normalised in-memory tensors (docs/method-card.md §1).

Every job loads its dataset once and trains by indexing tensors, so images are converted in one
vectorised step (uint8 -> float32, per-channel normalisation), never per sample through PIL.
MNIST and Fashion-MNIST are read straight from their IDX files with numpy: no torchvision import on
a training job's start-up, and the Debian package ``dataset-fashion-mnist`` works offline.
torch, torchvision and scikit-learn are imported lazily, inside the functions that need them.

Decoded arrays are cached (``decoded_cache``): digits' split costs a scikit-learn import and
Fashion-MNIST's gunzip a third of a CPU-second, paid by every job otherwise. The cache is keyed by the
source files' path, size and modification time (and, for digits, scikit-learn's version and the split),
so a replaced or edited source file is decoded again; it is only an optimisation, skipped where the
cache folder cannot be written.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fedakd.io import file_sha256

if TYPE_CHECKING:
    import torch


class DataError(RuntimeError):
    """A dataset is unknown, missing, or damaged; the message says how to fix it."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    num_classes: int
    in_shape: tuple[int, int, int]  # (C, H, W)
    n_train: int
    n_test: int
    mean: tuple[float, ...]  # per channel, of images scaled to [0, 1]
    std: tuple[float, ...]
    class_names: tuple[str, ...]


# Folders searched for system-wide dataset packages (Debian's dataset-* install under share/datasets/).
# A module constant so tests can point it at an empty folder.
SYSTEM_PREFIXES: tuple[Path, ...] = (Path("/usr"), Path("/usr/local"))

# digits has no official split: a fixed stratified 75/25 split (scikit-learn's train_test_split,
# random_state 0) keeps every run and machine on the same train and test examples.
DIGITS_TEST_FRACTION = 0.25
DIGITS_SPLIT_SEED = 0
DIGITS_MAX_VALUE = 16.0  # digits pixels are counts 0..16

_CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup",
    "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house",
    "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man",
    "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid",
    "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew",
    "skunk", "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower",
    "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor", "train", "trout",
    "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "fashion-mnist", 10, (1, 28, 28), 60000, 10000, (0.2860,), (0.3530,),
            ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
             "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        ),
        DatasetSpec(
            "mnist", 10, (1, 28, 28), 60000, 10000, (0.1307,), (0.3081,),
            tuple(str(digit) for digit in range(10)),
        ),
        DatasetSpec(
            "cifar10", 10, (3, 32, 32), 50000, 10000,
            (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
            ("airplane", "automobile", "bird", "cat", "deer",
             "dog", "frog", "horse", "ship", "truck"),
        ),
        DatasetSpec(
            "cifar100", 100, (3, 32, 32), 50000, 10000,
            (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
            _CIFAR100_CLASSES,
        ),
        # mean/std of the training split's pixels after /16 (measured once, fixed here).
        DatasetSpec(
            "digits", 10, (1, 8, 8), 1347, 450, (0.3052,), (0.3760,),
            tuple(str(digit) for digit in range(10)),
        ),
    )
}  # fmt: skip


@dataclass
class Dataset:
    name: str
    x_train: torch.Tensor  # float32 (N, C, H, W), normalised
    y_train: torch.Tensor  # int64 (N,)
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    in_shape: tuple[int, int, int]
    class_names: tuple[str, ...]


def dataset_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(
            f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}"
        ) from None


# --------------------------------------------------------------------------- IDX (MNIST family)


@dataclass(frozen=True)
class _IdxLayout:
    """Where an IDX dataset may live and how to get it."""

    torchvision_class: str  # also torchvision's folder: <root>/<class>/raw/
    folder: str  # <root>/<folder>/ and <prefix>/share/datasets/<folder>/
    debian_package: str | None


_IDX_LAYOUTS = {
    "fashion-mnist": _IdxLayout("FashionMNIST", "fashion-mnist", "dataset-fashion-mnist"),
    "mnist": _IdxLayout("MNIST", "mnist", None),
}
_IDX_SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_UNSIGNED_BYTE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"


def _idx_damaged(path: Path, problem: str) -> DataError:
    return DataError(
        f"IDX file {path} is damaged: {problem}. Replace it with an intact copy: delete it and "
        f"run with download allowed, copy the file again, or reinstall the package that installed it"
    )


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX file of ``ndim`` dimensions, gzipped or not (told by content).

    The header's magic number, dimensions and the byte count are checked, so a truncated or
    wrong file fails here with its name rather than as a shape error deep in training.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == _GZIP_MAGIC:
            raw = gzip.decompress(raw)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise _idx_damaged(path, f"gzip stream is truncated or corrupt ({exc})") from None
    except OSError as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from None
    expected_magic = (_IDX_UNSIGNED_BYTE << 8) | ndim
    magic = int.from_bytes(raw[:4], "big")
    if len(raw) < 4 or magic != expected_magic:
        raise _idx_damaged(
            path,
            f"magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
            f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})",
        )
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise _idx_damaged(path, f"{len(raw)} bytes is shorter than the {header_size}-byte header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected_bytes = header_size + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected_bytes:
        raise _idx_damaged(
            path,
            f"header says {dims} ({expected_bytes} bytes) but the file holds {len(raw)} bytes"
            + (" (truncated)" if len(raw) < expected_bytes else ""),
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims)


def _idx_file(folder: Path, stem: str) -> Path | None:
    """The decompressed file if present (no gunzip needed), else the .gz, else None."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _idx_folders(name: str, data_root: Path) -> list[Path]:
    layout = _IDX_LAYOUTS[name]
    return [
        data_root / layout.torchvision_class / "raw",
        data_root / layout.folder,
        *(Path(prefix) / "share" / "datasets" / layout.folder for prefix in SYSTEM_PREFIXES),
    ]


def _find_idx_files(name: str, data_root: Path) -> dict[str, Path] | None:
    """The four IDX files from the first folder that holds all of them."""
    stems = [stem for pair in _IDX_SPLITS.values() for stem in pair]
    for folder in _idx_folders(name, data_root):
        files = {stem: _idx_file(folder, stem) for stem in stems}
        if all(files.values()):
            return files  # type: ignore[return-value]
    return None


def _how_to_get(name: str, data_root: Path) -> str:
    if name in _IDX_LAYOUTS:
        layout = _IDX_LAYOUTS[name]
        ways = [] if layout.debian_package is None else [
            f"`apt-get install {layout.debian_package}` (Debian, offline)"
        ]
        ways.append(
            "put the four IDX .gz files ("
            + ", ".join(f"{stem}.gz" for pair in _IDX_SPLITS.values() for stem in pair)
            + f") in {data_root / layout.torchvision_class / 'raw'}/"
        )
    else:
        folder = _CIFAR_LAYOUTS[name].folder
        ways = [f"put the extracted {folder}/ folder of the official (python) archive in {data_root}/"]
    ways.append(f"run with download allowed (torchvision fetches it into {data_root}/)")
    return "To get it: " + ", or ".join(ways) + "."


def _download_with_torchvision(name: str, data_root: Path) -> None:
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, _IDX_LAYOUTS[name].torchvision_class)
    try:
        dataset_class(str(data_root), train=True, download=True)
    except Exception as exc:  # network, disk, checksum: all mean "could not download"
        raise DataError(
            f"downloading {name} into {data_root} failed ({type(exc).__name__}: {exc}). "
            + _how_to_get(name, data_root)
        ) from None


def _locate_idx(name: str, data_root: Path, download: bool) -> dict[str, Path]:
    files = _find_idx_files(name, data_root)
    if files is None and download:
        _download_with_torchvision(name, data_root)
        files = _find_idx_files(name, data_root)
    if files is None:
        searched = ", ".join(str(folder) for folder in _idx_folders(name, data_root))
        raise DataError(
            f"{name} is not on this machine (looked for its four IDX files in {searched}"
            f"{'; download was not allowed' if not download else ''}). " + _how_to_get(name, data_root)
        )
    return files


def _read_idx_labels(path: Path, spec: DatasetSpec) -> np.ndarray:
    labels = read_idx(path, ndim=1)
    if labels.size and labels.max() >= spec.num_classes:
        raise _idx_damaged(path, f"label {labels.max()} is outside 0..{spec.num_classes - 1}")
    return labels


def _read_idx_split(files: dict[str, Path], split: str, spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    images_stem, labels_stem = _IDX_SPLITS[split]
    images = read_idx(files[images_stem], ndim=3)
    labels = _read_idx_labels(files[labels_stem], spec)
    if images.shape[1:] != spec.in_shape[1:]:
        raise _idx_damaged(
            files[images_stem], f"images are {images.shape[1:]}, {spec.name} has {spec.in_shape[1:]}"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{files[images_stem]} holds {len(images)} images but {files[labels_stem]} holds "
            f"{len(labels)} labels: the two files come from different sets; replace both with one "
            f"intact copy of {spec.name}"
        )
    return images, labels


def _idx_arrays(name: str, files: dict[str, Path], spec: DatasetSpec, refresh: bool = False) -> tuple[np.ndarray, ...]:
    return decoded_cache(name, [files[stem] for pair in _IDX_SPLITS.values() for stem in pair], "idx",
                         lambda: (*_read_idx_split(files, "train", spec), *_read_idx_split(files, "test", spec)),
                         refresh)


# --------------------------------------------------------------------------- CIFAR (torchvision's layout)
@dataclass(frozen=True)
class _CifarLayout:
    """The python version of the official archive, as torchvision extracts it (and reads it)."""

    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    labels_key: str
    names_key: str


_CIFAR_LAYOUTS = {
    "cifar10": _CifarLayout("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                            "batches.meta", "labels", "label_names"),
    "cifar100": _CifarLayout("cifar-100-python", ("train",), ("test",), "meta", "fine_labels", "fine_label_names"),
}


def _cifar_class(name: str):
    import torchvision.datasets

    return {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}[name]


class _BatchUnpickler:
    """The official batches are pickles of plain dicts, lists, bytes and NumPy arrays: only those are rebuilt
    (a pickle naming anything else, which could run code, is refused as damaged)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}  # bytes, as protocol 2 writes them

    @classmethod
    def load(cls, path: Path) -> dict:
        import pickle

        class Restricted(pickle.Unpickler):
            def find_class(self, module, name):
                if (module, name) not in cls.ALLOWED:
                    raise pickle.UnpicklingError(f"{module}.{name} is not part of a CIFAR batch")
                return super().find_class(module, name)

        with open(path, "rb") as fh:
            data = Restricted(fh, encoding="latin1").load()
        if not isinstance(data, dict):
            raise pickle.UnpicklingError("not a dict")
        return {key.decode() if isinstance(key, bytes) else key: value for key, value in data.items()}


def _read_cifar_batches(name: str, folder: Path, files: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    layout, spec = _CIFAR_LAYOUTS[name], dataset_spec(name)
    images, labels = [], []
    for filename in files:
        path = folder / filename
        try:
            batch = _BatchUnpickler.load(path)
            data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, *spec.in_shape)
            targets = np.asarray(batch[layout.labels_key], dtype=np.int64)
        except FileNotFoundError:
            raise DataError(f"{name}: {path} is missing. " + _how_to_get(name, folder.parent)) from None
        except Exception as exc:  # unpickling, a missing key, a wrong size
            raise DataError(f"{name}: {path} is not a batch of the official archive ({type(exc).__name__}: {exc}); "
                            f"it is damaged: " + _how_to_get(name, folder.parent)) from None
        if len(data) != len(targets) or (targets.size and not 0 <= targets.min() <= targets.max() < spec.num_classes):
            raise DataError(f"{name}: {path} holds {len(data)} images and {len(targets)} labels in "
                            f"{targets.min() if targets.size else '-'}..{targets.max() if targets.size else '-'}; "
                            f"it is damaged: " + _how_to_get(name, folder.parent))
        images.append(data)
        labels.append(targets)
    return np.concatenate(images), np.concatenate(labels)


def _cifar_folder(name: str, data_root: Path, download: bool) -> Path:
    """The extracted archive's folder; downloaded through torchvision when absent and allowed."""
    layout = _CIFAR_LAYOUTS[name]
    folder = data_root / layout.folder
    if not folder.is_dir() and download:
        try:
            _cifar_class(name)(str(data_root), train=True, download=True)
        except Exception as exc:  # network, disk, checksum: all mean "could not download"
            raise DataError(f"downloading {name} into {data_root} failed ({type(exc).__name__}: {exc}). "
                            + _how_to_get(name, data_root)) from None
    if not folder.is_dir():
        raise DataError(f"{name} is not in {folder}{'; download was not allowed' if not download else ''}. "
                        + _how_to_get(name, data_root))
    try:
        meta = _BatchUnpickler.load(folder / layout.meta) if (folder / layout.meta).exists() else {}
    except Exception as exc:
        raise DataError(f"{name}: {folder / layout.meta} is not the archive's meta file ({type(exc).__name__}: "
                        f"{exc}); it is damaged: " + _how_to_get(name, data_root)) from None
    names = tuple(label.decode() if isinstance(label, bytes) else label for label in meta.get(layout.names_key, ()))
    if names and names != dataset_spec(name).class_names:
        raise DataError(f"{name} in {folder} lists classes {names[:5]}..., which differ from "
                        f"fedakd.data.DATASETS[{name!r}].class_names; fix the table in fedakd/data.py")
    return folder


def _cifar_arrays(name: str, data_root: Path, download: bool) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test) of CIFAR-10/100, images channels first, read from the python batches
    (torchvision's layout) without torchvision's fixed checksums, so that any copy in that format is read."""
    layout = _CIFAR_LAYOUTS[name]
    folder = _cifar_folder(name, data_root, download)
    return (*_read_cifar_batches(name, folder, layout.train), *_read_cifar_batches(name, folder, layout.test))


def _cifar_files(name: str, data_root: Path) -> list[Path]:
    layout = _CIFAR_LAYOUTS[name]
    return [data_root / layout.folder / filename for filename in (*layout.train, *layout.test, layout.meta)]


# --------------------------------------------------------------------------- decoded cache

#: Bumped when what the cache holds changes meaning.
CACHE_VERSION = 1
CACHE_PARTS = ("x_train", "y_train", "x_test", "y_test")


def cache_root() -> Path:
    """$FEDAKD_CACHE, else $XDG_CACHE_HOME/fedakd, else ~/.cache/fedakd."""
    if os.environ.get("FEDAKD_CACHE"):
        return Path(os.environ["FEDAKD_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fedakd"


def _cache_folder(name: str, sources: list[Path], extra: str) -> Path:
    identity = [name, CACHE_VERSION, extra]
    for path in sources:
        stat = path.stat()
        identity.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:20]
    return cache_root() / f"{name}-{key}"


def decoded_cache(name: str, sources: list[Path], extra: str, decode, refresh: bool = False) -> tuple[np.ndarray, ...]:
    """``decode()``'s (x_train, y_train, x_test, y_test), from the cache when the sources are unchanged
    (``refresh``: decode the sources in any case, and rewrite the cache)."""
    folder = _cache_folder(name, sources, extra)
    if not refresh:
        try:
            return tuple(np.load(folder / f"{part}.npy", mmap_mode="r", allow_pickle=False) for part in CACHE_PARTS)
        except (OSError, ValueError):  # absent, or a damaged entry: decode again and rewrite it
            pass
    arrays = tuple(np.ascontiguousarray(a) for a in decode())
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for part, array in zip(CACHE_PARTS, arrays):
            tmp = folder / f".{part}.{os.getpid()}.npy"
            np.save(tmp, array, allow_pickle=False)
            os.replace(tmp, folder / f"{part}.npy")
    except OSError:
        pass  # a read-only home or cache folder: no cache, the same arrays
    return arrays


# --------------------------------------------------------------------------- digits (scikit-learn)


def _digits_file() -> Path:
    """scikit-learn's digits.csv.gz, found without importing scikit-learn."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise DataError("digits comes with scikit-learn, which is not installed: `pip install scikit-learn`")
    return Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"


def _digits_arrays(refresh: bool = False) -> tuple[np.ndarray, ...]:
    from importlib.metadata import version

    extra = f"scikit-learn {version('scikit-learn')}, test {DIGITS_TEST_FRACTION}, seed {DIGITS_SPLIT_SEED}"
    return decoded_cache("digits", [_digits_file()], extra, _digits_split, refresh)


def _digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) with x as float counts 0..16, shape (N, 8, 8)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.images,
        digits.target,
        test_size=DIGITS_TEST_FRACTION,
        random_state=DIGITS_SPLIT_SEED,
        stratify=digits.target,
    )
    return x_train, y_train, x_test, y_test


# --------------------------------------------------------------------------- public loaders


def _normalised(images: np.ndarray, max_value: float, spec: DatasetSpec) -> torch.Tensor:
    """(N, C, H, W) float32 tensor of (images / max_value - mean) / std, computed in one pass."""
    import torch

    x = images.reshape(len(images), *spec.in_shape).astype(np.float32, order="C")
    std = np.asarray(spec.std, dtype=np.float32).reshape(1, -1, 1, 1)
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    x *= 1.0 / (max_value * std)
    x -= mean / std
    return torch.from_numpy(x)


def _labels(labels) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.array(labels, dtype=np.int64))  # a copy: the cache maps its arrays read-only


def checked_data_root(data_root: str | Path) -> Path:
    """``data_root`` as a Path, refused when it exists but is not a folder (a file there would otherwise read as
    "the dataset is not on this machine", or be passed over for the system copy without a word)."""
    data_root = Path(data_root)
    if data_root.exists() and not data_root.is_dir():
        raise DataError(f"data_root {data_root} is a file, not a folder: set data_root to the folder that holds (or "
                        "will hold) the datasets, e.g. data")
    return data_root


def load_dataset(name: str, data_root: str | Path, download: bool = False) -> Dataset:
    """Train and test splits of ``name`` as normalised tensors; DataError says what to do if missing."""
    spec = dataset_spec(name)
    data_root = checked_data_root(data_root)
    if name == "digits":
        x_train, y_train, x_test, y_test = _digits_arrays()
        max_value = DIGITS_MAX_VALUE
    elif name in _IDX_LAYOUTS:
        x_train, y_train, x_test, y_test = _idx_arrays(name, _locate_idx(name, data_root, download), spec)
        max_value = 255.0
    else:
        x_train, y_train, x_test, y_test = _cifar_arrays(name, data_root, download)
        max_value = 255.0
    return Dataset(
        name=name,
        x_train=_normalised(x_train, max_value, spec),
        y_train=_labels(y_train),
        x_test=_normalised(x_test, max_value, spec),
        y_test=_labels(y_test),
        num_classes=spec.num_classes,
        in_shape=spec.in_shape,
        class_names=spec.class_names,
    )


def load_train_labels(name: str, data_root: str | Path, download: bool = False) -> np.ndarray:
    """Training labels (int64, in load_dataset's order): all that partitioning needs.

    For the IDX datasets only the small labels file is read.
    """
    spec = dataset_spec(name)
    data_root = checked_data_root(data_root)
    if name == "digits":
        labels = _digits_arrays()[1]
    elif name in _IDX_LAYOUTS:
        files = _locate_idx(name, data_root, download)
        labels = _read_idx_labels(files[_IDX_SPLITS["train"][1]], spec)
    else:
        labels = _cifar_arrays(name, data_root, download)[1]
    return np.asarray(labels, dtype=np.int64)


def ensure_dataset(name: str, data_root: str | Path, download: bool = True) -> dict:
    """Make sure ``name`` is present and readable; describe where it was found and what it holds.

    For the pipeline's data rule, so that a missing or damaged dataset fails once, up front,
    and the record ties every result to the exact files (SHA-256) it was computed from. The sources
    are decoded in full and the decoded cache written, once, before any job reads it.
    """
    spec = dataset_spec(name)
    data_root = Path(data_root)
    if name == "digits":
        _, y_train, _, y_test = _digits_arrays(refresh=True)
        files = [_digits_file()]
        source = files[0].parent
    elif name in _IDX_LAYOUTS:
        found = _locate_idx(name, data_root, download)
        _, y_train, _, y_test = _idx_arrays(name, found, spec, refresh=True)  # decoded, checked, cached
        files = list(found.values())
        source = files[0].parent
    else:
        _, y_train, _, y_test = _cifar_arrays(name, data_root, download)
        files = _cifar_files(name, data_root)
        source = files[0].parent
    return {
        "name": name,
        "source": str(source),
        "n_train": len(y_train),
        "n_test": len(y_test),
        "files": {path.name: file_sha256(path) for path in files},
    }
