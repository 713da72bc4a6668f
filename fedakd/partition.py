"""Imbalanced federated partitions (METHOD.md §1): transfer set, global imbalance, client split.

A partition is made in three seeded stages, each with its own random stream, so that
changing one stage's parameters never shifts the draws of another:

1. the transfer (proxy) set: ``proxy_per_class`` examples of every class, set aside;
2. the global imbalance of the remaining pool (``none``, ``longtail``, ``step``);
3. the split of the imbalanced pool over the clients (``iid``, ``dirichlet``, ``classes``,
   ``quantity``; the last three follow NIID-Bench).

It is saved once per (dataset, setting, seed) as ``indices.npz`` + ``manifest.json`` and
reused by every method; the SHA-256 over the indices ties every run to it.
"""

from __future__ import annotations

import hashlib
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedakd.io import atomic_path, atomic_write_json, read_json

FORMAT_VERSION = 1
INDICES_FILE = "indices.npz"
MANIFEST_FILE = "manifest.json"

# Fixed tags that give every stage its own random stream from the one seed.
_PROXY_STREAM, _IMBALANCE_STREAM, _SPLIT_STREAM = 1, 2, 3

_IMBALANCE_DEFAULTS = {"none": {"shuffle_classes": False},
                       "longtail": {"shuffle_classes": False},
                       "step": {"minority_fraction": 0.5, "shuffle_classes": False}}
_IMBALANCE_KEYS = {"kind", "factor", "minority_fraction", "shuffle_classes"}
_SPLIT_DEFAULTS = {"iid": {}, "dirichlet": {"min_size": 10, "max_retries": 100},
                   "classes": {}, "quantity": {"min_size": 10, "max_retries": 100}}
_SPLIT_KEYS = {"kind", "alpha", "k", "min_size", "max_retries"}


class PartitionError(ValueError):
    """A partition cannot be made or loaded as asked; the message names the fix."""


@dataclass(frozen=True, eq=False)
class Partition:
    """Which training examples each client holds, which form the transfer set, and why."""

    client_indices: list[np.ndarray]  # one sorted int64 array of training-set indices per client
    proxy_indices: np.ndarray  # sorted int64, the server's class-balanced transfer set
    num_classes: int
    class_counts: np.ndarray  # (C,) the imbalanced pool's count per class
    client_class_counts: np.ndarray  # (K, C)
    proxy_counts: np.ndarray  # (C,)
    groups: dict[str, list[int]]  # head, medium, tail, minority
    params: dict[str, Any]
    sha256: str

    def manifest(self) -> dict[str, Any]:
        """The manifest.json record (the partition contract of ARCHITECTURE.md)."""
        return {
            "format_version": FORMAT_VERSION,
            "dataset": self.params["dataset"],
            "seed": self.params["seed"],
            "sha256": self.sha256,
            "params": self.params,
            "num_classes": self.num_classes,
            "class_counts": [int(n) for n in self.class_counts],
            "client_class_counts": [[int(n) for n in row] for row in self.client_class_counts],
            "client_sizes": [len(indices) for indices in self.client_indices],
            "proxy_counts": [int(n) for n in self.proxy_counts],
            "groups": {name: list(classes) for name, classes in self.groups.items()},
        }


# -- class-count profiles --------------------------------------------------------------------
def _floor(value: float) -> int:
    """floor(), except that a value a rounding error away from an integer counts as that integer.

    Without this, 6000 * 100**(-1) could come out as 59.999... and floor to 59 instead of 60.
    """
    nearest = round(value)
    if abs(value - nearest) <= 1e-9 * max(1.0, abs(value)):
        return int(nearest)
    return math.floor(value)


def _ceil(value: float) -> int:
    """ceil() with the same tolerance: 0.3 * 10 = 3.0000000000000004 must give 3, not 4."""
    return -_floor(-value)


def longtail_counts(n_max: int, num_classes: int, factor: float) -> list[int]:
    """Per-rank counts floor(n_max * IF**(-c/(C-1))) (Cao et al. 2019's long-tailed profile)."""
    if num_classes == 1:
        return [n_max]
    return [_floor(n_max * factor ** (-rank / (num_classes - 1))) for rank in range(num_classes)]


def step_counts(n_max: int, num_classes: int, factor: float, minority_fraction: float) -> list[int]:
    """Per-rank counts: the last ceil(mu*C) classes keep floor(n_max/rho), the others n_max."""
    reduced = _ceil(minority_fraction * num_classes)
    return [n_max] * (num_classes - reduced) + [_floor(n_max / factor)] * reduced


def class_groups(class_counts, minority: list[int] | None = None) -> dict[str, list[int]]:
    """Head/medium/tail by share of the pool (FedLoGe/FedGraB convention) and the minority classes.

    Classes sorted by count (ties by class id): head = the fewest that hold >= 75 % of the pool,
    medium = the further ones up to >= 95 %, tail = the rest. Minority = the tail unless
    ``minority`` is given (``step`` passes its reduced classes). A balanced pool has no groups.
    """
    counts = np.asarray(class_counts, dtype=np.int64)
    if counts.size == 0 or np.all(counts == counts[0]):
        return {"head": [], "medium": [], "tail": [], "minority": []}
    order = np.argsort(-counts, kind="stable")
    total = int(counts.sum())
    cumulative = np.cumsum(counts[order])
    # Integer arithmetic: cumulative >= 75 % of total  <=>  4 * cumulative >= 3 * total.
    head_end = int(np.argmax(4 * cumulative >= 3 * total)) + 1
    medium_end = max(head_end, int(np.argmax(20 * cumulative >= 19 * total)) + 1)
    tail = sorted(int(c) for c in order[medium_end:])
    return {
        "head": sorted(int(c) for c in order[:head_end]),
        "medium": sorted(int(c) for c in order[head_end:medium_end]),
        "tail": tail,
        "minority": sorted(int(c) for c in minority) if minority is not None else tail,
    }


# -- hashing and files -----------------------------------------------------------------------
def partition_sha256(proxy_indices, client_indices) -> str:
    """SHA-256 over the index arrays in a fixed byte layout, independent of how they were stored.

    Layout, all little-endian int64: the number of arrays (1 + K), then for the proxy array and
    each client's array in client order: its length followed by its values.
    """
    arrays = [proxy_indices, *client_indices]
    digest = hashlib.sha256()
    digest.update(np.array([len(arrays)], dtype="<i8").tobytes())
    for array in arrays:
        values = np.asarray(array, dtype="<i8")
        digest.update(np.array([values.size], dtype="<i8").tobytes())
        digest.update(values.tobytes())
    return digest.hexdigest()


def save_partition(partition: Partition, out_dir) -> Path:
    """Write indices.npz, then manifest.json (each atomically): a manifest means complete indices."""
    out_dir = Path(out_dir)
    arrays = {"proxy": partition.proxy_indices}
    arrays.update({f"client_{i}": indices for i, indices in enumerate(partition.client_indices)})
    with atomic_path(out_dir / INDICES_FILE) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)  # a file object, so numpy does not append ".npz" to the temporary name
    return atomic_write_json(out_dir / MANIFEST_FILE, partition.manifest())


def _refuse(path: Path, problem: str, out_dir: Path) -> PartitionError:
    return PartitionError(
        f"{path} {problem}; delete {out_dir} and rerun `fedakd partition` (or the pipeline) to remake it"
    )


def _read_indices(path: Path, num_clients: int, out_dir: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    try:
        # Our own handle: np.load leaks the one it opens when the archive is damaged.
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except FileNotFoundError:
        raise _refuse(path, "does not exist", out_dir) from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise _refuse(path, f"cannot be read ({exc})", out_dir) from None
    expected = {"proxy"} | {f"client_{i}" for i in range(num_clients)}
    if set(arrays) != expected:
        raise _refuse(path, f"holds arrays {sorted(arrays)}, not the proxy and the {num_clients} clients "
                            f"that {MANIFEST_FILE} lists", out_dir)
    for name, values in arrays.items():
        if values.ndim != 1 or values.dtype != np.int64:
            raise _refuse(path, f"array {name} is {values.dtype} of shape {values.shape}, not 1-D int64", out_dir)
    return arrays["proxy"], [arrays[f"client_{i}"] for i in range(num_clients)]


def load_partition(out_dir) -> Partition:
    """Read a saved partition, refusing it unless the indices hash to the manifest's sha256."""
    out_dir = Path(out_dir)
    manifest_path = out_dir / MANIFEST_FILE
    try:
        manifest = read_json(manifest_path, what="partition manifest")
    except ValueError:
        raise _refuse(manifest_path, "is missing or not valid JSON", out_dir) from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != FORMAT_VERSION:
        raise _refuse(manifest_path, f"has format_version {version!r}, this code reads {FORMAT_VERSION}", out_dir)
    try:
        num_clients = len(manifest["client_sizes"])
        expected_sha = manifest["sha256"]
        fields = {
            "num_classes": int(manifest["num_classes"]),
            "class_counts": np.asarray(manifest["class_counts"], dtype=np.int64),
            "client_class_counts": np.asarray(manifest["client_class_counts"], dtype=np.int64),
            "proxy_counts": np.asarray(manifest["proxy_counts"], dtype=np.int64),
            "groups": {name: list(manifest["groups"][name]) for name in ("head", "medium", "tail", "minority")},
            "params": manifest["params"],
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise _refuse(manifest_path, f"lacks or garbles a field ({exc!r})", out_dir) from None
    proxy_indices, client_indices = _read_indices(out_dir / INDICES_FILE, num_clients, out_dir)
    found_sha = partition_sha256(proxy_indices, client_indices)
    if found_sha != expected_sha:
        raise _refuse(out_dir / INDICES_FILE, f"has sha256 {found_sha}, but {MANIFEST_FILE} records "
                                              f"{expected_sha} (changed or from another run)", out_dir)
    return Partition(client_indices=client_indices, proxy_indices=proxy_indices, sha256=found_sha, **fields)


# -- parameter checks ------------------------------------------------------------------------
def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value) -> bool:
    return (_is_int(value) or isinstance(value, (float, np.floating))) and math.isfinite(value)


def _resolve(section: str, given: dict, defaults: dict[str, dict], known: set[str]) -> dict:
    if not isinstance(given, dict) or given.get("kind") not in defaults:
        kind = given.get("kind") if isinstance(given, dict) else given
        raise PartitionError(f"{section}.kind is {kind!r}; use one of {', '.join(defaults)}")
    unknown = sorted(set(given) - known)
    if unknown:
        raise PartitionError(f"{section} has unknown keys {unknown}; the known keys are {sorted(known)}")
    return {**defaults[given["kind"]], **given}


def _resolve_imbalance(imbalance: dict) -> dict:
    resolved = _resolve("imbalance", imbalance, _IMBALANCE_DEFAULTS, _IMBALANCE_KEYS)
    if resolved["kind"] != "none":
        factor = resolved.get("factor")
        if not _is_number(factor) or factor < 1:
            raise PartitionError(f"imbalance.factor is {factor!r}; it must be a number >= 1 "
                                 f"(1 = balanced, e.g. 10 or 100)")
    if resolved["kind"] == "step":
        fraction = resolved["minority_fraction"]
        if not _is_number(fraction) or not 0 < fraction <= 1:
            raise PartitionError(f"imbalance.minority_fraction is {fraction!r}; it must lie in (0, 1], e.g. 0.5")
    if not isinstance(resolved["shuffle_classes"], (bool, np.bool_)):
        raise PartitionError(f"imbalance.shuffle_classes is {resolved['shuffle_classes']!r}; use true or false")
    return resolved


def _resolve_split(split: dict, num_classes: int) -> dict:
    resolved = _resolve("split", split, _SPLIT_DEFAULTS, _SPLIT_KEYS)
    kind = resolved["kind"]
    if kind in ("dirichlet", "quantity"):
        alpha = resolved.get("alpha")
        if not _is_number(alpha) or alpha <= 0:
            raise PartitionError(f"split.alpha is {alpha!r}; it must be a number > 0 "
                                 f"(small = skewed, e.g. 0.1; large = near-iid, e.g. 100)")
        if not _is_int(resolved["min_size"]) or resolved["min_size"] < 0:
            raise PartitionError(f"split.min_size is {resolved['min_size']!r}; it must be an integer >= 0")
        if not _is_int(resolved["max_retries"]) or resolved["max_retries"] < 1:
            raise PartitionError(f"split.max_retries is {resolved['max_retries']!r}; it must be an integer >= 1")
    if kind == "classes":
        k = resolved.get("k")
        if not _is_int(k) or not 1 <= k <= num_classes:
            raise PartitionError(f"split.k is {k!r}; each client holds k classes, so k must be an integer "
                                 f"from 1 to the number of classes ({num_classes})")
    return resolved


def _check_labels(labels, num_classes) -> np.ndarray:
    if not _is_int(num_classes) or num_classes < 1:
        raise PartitionError(f"num_classes is {num_classes!r}; it must be an integer >= 1")
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise PartitionError(f"labels must be a 1-D integer array, got {labels.dtype} of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise PartitionError(f"labels run from {labels.min()} to {labels.max()}, outside 0..{num_classes - 1}; "
                             f"check num_classes for this dataset")
    return labels.astype(np.int64, copy=False)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


# -- the three stages ------------------------------------------------------------------------
def _draw_proxy(labels: np.ndarray, num_classes: int, per_class: int, rng) -> np.ndarray:
    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if members.size < per_class:
            raise PartitionError(f"class {c} has {members.size} training examples, fewer than "
                                 f"proxy_per_class = {per_class}; lower federation.proxy_per_class")
        chosen.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _imbalance_pool(labels: np.ndarray, pool: np.ndarray, num_classes: int, imbalance: dict, rng):
    """Subsample the pool to the profile; returns (kept indices, per-class counts, minority classes or None)."""
    available = np.bincount(labels[pool], minlength=num_classes)
    if imbalance["kind"] == "none":
        return pool, available, None
    n_max = int(available.min())
    if imbalance["kind"] == "longtail":
        by_rank = longtail_counts(n_max, num_classes, imbalance["factor"])
    else:
        by_rank = step_counts(n_max, num_classes, imbalance["factor"], imbalance["minority_fraction"])
    if min(by_rank) < 1:
        raise PartitionError(f"imbalance.factor = {imbalance['factor']} leaves the rarest class with no examples "
                             f"(the pool's smallest class has {n_max}); use a factor <= {n_max}")
    rank_to_class = rng.permutation(num_classes) if imbalance["shuffle_classes"] else np.arange(num_classes)
    counts = np.zeros(num_classes, dtype=np.int64)
    counts[rank_to_class] = by_rank
    kept = [rng.choice(pool[labels[pool] == c], size=int(counts[c]), replace=False) for c in range(num_classes)]
    minority = None
    if imbalance["kind"] == "step":
        minority = [int(c) for c, n in zip(rank_to_class, by_rank) if n < n_max]
    return np.sort(np.concatenate(kept)), counts, minority


def _retry_error(split: dict, clients: int, smallest: int, required: int) -> PartitionError:
    return PartitionError(
        f"split {split['kind']} (alpha={split['alpha']}) gave a client with only {smallest} examples in "
        f"{split['max_retries']} draws, but min_size asks for {required}; raise split.alpha, lower "
        f"split.min_size or the number of clients ({clients}), or raise split.max_retries"
    )


def _cuts(shares: np.ndarray, size: int) -> np.ndarray:
    """Where np.split cuts ``size`` items into pieces proportional to ``shares`` (NIID-Bench's rounding).

    Dividing by the last cumulative sum (not by the sum of shares) makes the final cut exactly
    ``size`` when trailing shares are zero, so a capped last client gets nothing, not one item.
    """
    cumulative = np.cumsum(shares)
    return (cumulative / cumulative[-1] * size).astype(np.int64)[:-1]


def _split_iid(pool, clients, rng) -> list[np.ndarray]:
    return np.array_split(rng.permutation(pool), clients)


def _split_dirichlet(labels, pool, num_classes, clients, split, rng) -> list[np.ndarray]:
    """NIID-Bench's label skew: per class Dir(alpha) shares; a client at >= N/K gets no more."""
    total = pool.size
    by_class = [pool[labels[pool] == c] for c in range(num_classes)]
    required = max(split["min_size"], 1)  # a client with no data cannot train
    smallest = 0
    for _ in range(split["max_retries"]):
        parts = [[] for _ in range(clients)]
        sizes = np.zeros(clients, dtype=np.int64)
        for c in range(num_classes):
            members = rng.permutation(by_class[c])
            shares = rng.dirichlet(np.full(clients, float(split["alpha"])))
            shares = np.where(sizes * clients < total, shares, 0.0)  # the cap, in exact integers
            if not shares.sum() > 0:
                break  # every open client drew a zero share (tiny alpha): redraw
            cuts = _cuts(shares, members.size)
            for client, piece in enumerate(np.split(members, cuts)):
                parts[client].append(piece)
                sizes[client] += piece.size
        else:
            smallest = int(sizes.min())
            if smallest >= required:
                return [np.concatenate(p) for p in parts]
    raise _retry_error(split, clients, smallest, required)


def _split_classes(labels, pool, num_classes, clients, k, rng) -> list[np.ndarray]:
    """NIID-Bench's #C=k: client i holds class i % C and k-1 further random classes."""
    held = []
    for client in range(clients):
        others = rng.permutation(np.delete(np.arange(num_classes), client % num_classes))[: k - 1]
        held.append({client % num_classes, *(int(c) for c in others)})
    parts = [[] for _ in range(clients)]
    for c in range(num_classes):
        holders = [client for client in range(clients) if c in held[client]]
        if holders:
            members = rng.permutation(pool[labels[pool] == c])
            for client, piece in zip(holders, np.array_split(members, len(holders))):
                parts[client].append(piece)
    return [np.concatenate(p) for p in parts]


def _split_quantity(pool, clients, split, rng) -> list[np.ndarray]:
    """NIID-Bench's quantity skew: IID labels, client sizes ~ Dir(alpha)."""
    shuffled = rng.permutation(pool)
    required = max(split["min_size"], 1)
    smallest = 0
    for _ in range(split["max_retries"]):
        shares = rng.dirichlet(np.full(clients, float(split["alpha"])))
        if not shares.sum() > 0:
            continue  # all shares underflowed to zero (tiny alpha): redraw
        cuts = _cuts(shares, pool.size)
        smallest = int(np.diff(np.concatenate([[0], cuts, [pool.size]])).min())
        if smallest >= required:
            return np.split(shuffled, cuts)
    raise _retry_error(split, clients, smallest, required)


def make_partition(labels: np.ndarray, num_classes: int, *, imbalance: dict, split: dict, clients: int,
                   proxy_per_class: int, seed: int, dataset: str = "") -> Partition:
    """Set aside the transfer set, impose the global imbalance, split the pool over the clients."""
    labels = _check_labels(labels, num_classes)
    if not _is_int(seed) or seed < 0:
        raise PartitionError(f"seed is {seed!r}; it must be an integer >= 0")
    if not _is_int(clients) or clients < 1:
        raise PartitionError(f"federation.clients is {clients!r}; it must be an integer >= 1")
    if not _is_int(proxy_per_class) or proxy_per_class < 0:
        raise PartitionError(f"federation.proxy_per_class is {proxy_per_class!r}; it must be an integer >= 0")
    resolved_imbalance = _resolve_imbalance(imbalance)
    resolved_split = _resolve_split(split, num_classes)

    proxy = _draw_proxy(labels, num_classes, proxy_per_class, _rng(seed, _PROXY_STREAM))
    pool = np.setdiff1d(np.arange(labels.size, dtype=np.int64), proxy, assume_unique=True)
    if np.any(np.bincount(labels[pool], minlength=num_classes) == 0):
        missing = np.flatnonzero(np.bincount(labels[pool], minlength=num_classes) == 0).tolist()
        raise PartitionError(f"classes {missing} have no training examples left for the clients "
                             f"(proxy_per_class = {proxy_per_class}); lower federation.proxy_per_class")
    kept, class_counts, minority = _imbalance_pool(labels, pool, num_classes, resolved_imbalance,
                                                   _rng(seed, _IMBALANCE_STREAM))
    if clients > kept.size:
        raise PartitionError(f"federation.clients = {clients} exceeds the {kept.size} examples in the pool; "
                             f"use fewer clients or a smaller imbalance factor")

    if resolved_split.get("min_size", 0) * clients > kept.size:
        raise PartitionError(f"split.min_size = {resolved_split['min_size']} for each of {clients} clients needs "
                             f"more than the {kept.size} examples in the pool; lower split.min_size or the clients")
    rng = _rng(seed, _SPLIT_STREAM)
    kind = resolved_split["kind"]
    if kind == "iid":
        parts = _split_iid(kept, clients, rng)
    elif kind == "dirichlet":
        parts = _split_dirichlet(labels, kept, num_classes, clients, resolved_split, rng)
    elif kind == "classes":
        parts = _split_classes(labels, kept, num_classes, clients, resolved_split["k"], rng)
    else:
        parts = _split_quantity(kept, clients, resolved_split, rng)
    client_indices = [np.sort(part).astype(np.int64) for part in parts]
    empty = [i for i, part in enumerate(client_indices) if part.size == 0]
    if empty:
        raise PartitionError(f"clients {empty} would get no examples (split {kind}); use fewer clients, "
                             f"a larger split.k or a smaller imbalance factor")

    balanced = resolved_imbalance["kind"] == "none"  # the pool's natural counts are not a skew to report
    groups = class_groups(np.ones(num_classes) if balanced else class_counts, minority)
    params = {
        "dataset": dataset, "seed": int(seed), "clients": int(clients), "proxy_per_class": int(proxy_per_class),
        # As given, so a job can check a saved partition against its config verbatim ...
        "imbalance": dict(imbalance), "split": dict(split),
        # ... and with defaults filled: everything that determined the partition.
        "resolved": {"imbalance": resolved_imbalance, "split": resolved_split},
        "num_classes": int(num_classes), "train_size": int(labels.size), "pool_size": int(pool.size),
        "imbalanced_pool_size": int(kept.size),
    }
    return Partition(
        client_indices=client_indices,
        proxy_indices=proxy,
        num_classes=int(num_classes),
        class_counts=class_counts.astype(np.int64),
        client_class_counts=np.stack([np.bincount(labels[part], minlength=num_classes) for part in client_indices]),
        proxy_counts=np.bincount(labels[proxy], minlength=num_classes).astype(np.int64),
        groups=groups,
        params=params,
        sha256=partition_sha256(proxy, client_indices),
    )
