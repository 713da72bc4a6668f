"""Imbalanced federated partitions (docs/method-card.md §1): transfer set, global imbalance, client split.

A partition is made in seeded stages, each with its own random stream, so that changing one
stage's parameters never shifts the draws of another:

1. the transfer set: ``proxy_per_class`` examples of every class, set aside;
2. the validation set: ``validation_per_class`` examples of every class, held out for tuning
   (docs/method-card.md §5; 0 by default, which leaves every other stage and the hash as they were);
3. the global imbalance of the remaining pool (``none``, ``longtail``, ``step``);
4. the split of the imbalanced pool over the clients (``iid``, ``dirichlet``, ``classes``,
   ``quantity``; the last three follow NIID-Bench).

It is saved once per (dataset, setting, seed) as ``indices.npz`` + ``manifest.json`` and
reused by every method; the SHA-256 over the indices ties every run to it, and a second one over
the whole manifest (``record_sha256``) refuses a hand-edited class count or class group. The parameters come
resolved and checked (fedakd.config.spec.PartitionSpec, made by fedakd.config); what is checked here
depends on the data (a class too small for the transfer set, a pool too small for the clients).
"""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedakd.io import atomic_path, atomic_write_json, json_safe, read_json
from fedakd.layout import INDICES_FILE, MANIFEST_FILE
from fedakd.seeding import (PARTITION_IMBALANCE, PARTITION_SPLIT, PARTITION_TRANSFER, PARTITION_VALIDATION,
                             numpy_rng)
from fedakd.config.spec import PartitionSpec

#: 2: params are the resolved PartitionSpec and its digest; an optional validation array.
#: 3: record_sha256 covers every other manifest field (class counts and groups were outside any hash); the
#:    transfer set's array and counts are named "transfer" (formerly "proxy").
FORMAT_VERSION = 3

class PartitionError(ValueError):
    """A partition cannot be made or loaded as asked; the message names the fix."""


@dataclass(frozen=True, eq=False)
class Partition:
    """Which training examples each client holds, which form the transfer and validation sets, and why."""

    client_indices: list[np.ndarray]  # one sorted int64 array of training-set indices per client
    transfer_indices: np.ndarray  # sorted int64, the server's class-balanced transfer set
    validation_indices: np.ndarray  # sorted int64, held out for tuning; empty when validation_per_class is 0
    num_classes: int
    class_counts: np.ndarray  # (C,) count per class of the examples the clients hold (the imbalanced pool)
    client_class_counts: np.ndarray  # (K, C)
    transfer_counts: np.ndarray  # (C,)
    groups: dict[str, list[int]]  # head, medium, tail, minority
    params: dict[str, Any]  # the PartitionSpec, its digest, and the sizes each stage left
    sha256: str

    def manifest(self) -> dict[str, Any]:
        """The manifest.json record (the partition contract of ARCHITECTURE.md), sealed by record_sha256."""
        record = {
            "format_version": FORMAT_VERSION,
            "dataset": self.params["dataset"],
            "seed": self.params["seed"],
            "sha256": self.sha256,
            "params": self.params,
            "num_classes": self.num_classes,
            "class_counts": [int(n) for n in self.class_counts],
            "client_class_counts": [[int(n) for n in row] for row in self.client_class_counts],
            "client_sizes": [len(indices) for indices in self.client_indices],
            "transfer_counts": [int(n) for n in self.transfer_counts],
            "validation_size": int(len(self.validation_indices)),
            "groups": {name: [int(c) for c in classes] for name, classes in self.groups.items()},
        }
        return {**record, "record_sha256": record_sha256(record)}


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

    Classes sorted by count: head = the fewest that hold >= 75 % of the pool, medium = the
    further ones up to >= 95 %, tail = the rest; a boundary never separates classes of equal
    count (it moves on past them), so a class's group depends on its count, not on its id.
    Minority = the tail unless ``minority`` is given (``step`` passes its reduced classes).
    Classes with no examples (a ``classes`` split that no client drew) belong to no group. A
    balanced pool has no groups.
    """
    counts = np.asarray(class_counts, dtype=np.int64)
    used = np.flatnonzero(counts > 0)
    if used.size == 0 or np.all(counts[used] == counts[used[0]]):
        return {"head": [], "medium": [], "tail": [], "minority": []}
    order = used[np.argsort(-counts[used], kind="stable")]
    sorted_counts = counts[order]
    total = int(sorted_counts.sum())
    cumulative = np.cumsum(sorted_counts)

    def end_of_share(numerator: int, denominator: int, start: int) -> int:
        """First position whose cumulative share reaches numerator/denominator, moved past equal counts."""
        # Integer arithmetic: cumulative >= 75 % of total  <=>  4 * cumulative >= 3 * total.
        end = max(start, int(np.argmax(denominator * cumulative >= numerator * total)) + 1)
        while end < order.size and sorted_counts[end] == sorted_counts[end - 1]:
            end += 1
        return end

    head_end = end_of_share(3, 4, 0)
    medium_end = end_of_share(19, 20, head_end)
    tail = sorted(int(c) for c in order[medium_end:])
    return {
        "head": sorted(int(c) for c in order[:head_end]),
        "medium": sorted(int(c) for c in order[head_end:medium_end]),
        "tail": tail,
        "minority": sorted(int(c) for c in minority) if minority is not None else tail,
    }


# -- hashing and files -----------------------------------------------------------------------
def partition_sha256(transfer_indices, client_indices, validation_indices=()) -> str:
    """SHA-256 over the index arrays in a fixed byte layout, independent of how they were stored.

    Layout, all little-endian int64: the number of arrays (1 + K), then for the transfer array and
    each client's array in client order: its length followed by its values. A validation set,
    when there is one, follows as -1 (a length no array has, so no partition without one can
    hash alike), its length and its values; without one the layout, and so the hash, is the one
    every partition had before validation sets existed.
    """
    arrays = [transfer_indices, *client_indices]
    digest = hashlib.sha256()
    digest.update(np.array([len(arrays)], dtype="<i8").tobytes())

    def add(array) -> None:
        values = np.asarray(array, dtype="<i8")
        digest.update(np.array([values.size], dtype="<i8").tobytes())
        digest.update(values.tobytes())

    for array in arrays:
        add(array)
    if len(validation_indices):
        digest.update(np.array([-1], dtype="<i8").tobytes())
        add(validation_indices)
    return digest.hexdigest()


def record_sha256(record: dict[str, Any]) -> str:
    """SHA-256 of a manifest's fields (all but record_sha256 itself) as canonical JSON: sorted keys, no
    spaces, finite numbers only. Any edit of a field a run reads (class counts, groups, sizes) changes it."""
    fields = json_safe({key: value for key, value in record.items() if key != "record_sha256"})
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def save_partition(partition: Partition, out_dir) -> Path:
    """Write indices.npz, then manifest.json (each atomically): a manifest means complete indices."""
    out_dir = Path(out_dir)
    arrays = {"transfer": partition.transfer_indices}
    arrays.update({f"client_{i}": indices for i, indices in enumerate(partition.client_indices)})
    if len(partition.validation_indices):
        arrays["validation"] = partition.validation_indices
    with atomic_path(out_dir / INDICES_FILE) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)  # a file object, so numpy does not append ".npz" to the temporary name
    return atomic_write_json(out_dir / MANIFEST_FILE, partition.manifest())


def _refuse(path: Path, problem: str, out_dir: Path) -> PartitionError:
    return PartitionError(
        f"{path} {problem}; delete {out_dir} and rerun `fedakd partition` (or the pipeline) to remake it"
    )


def _read_indices(path: Path, num_clients: int, with_validation: bool, out_dir: Path) -> dict[str, np.ndarray]:
    try:
        # Our own handle: np.load leaks the one it opens when the archive is damaged.
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except FileNotFoundError:
        raise _refuse(path, "does not exist", out_dir) from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise _refuse(path, f"cannot be read ({exc})", out_dir) from None
    expected = ({"transfer"} | {f"client_{i}" for i in range(num_clients)}
                | ({"validation"} if with_validation else set()))
    if set(arrays) != expected:
        raise _refuse(path, f"holds arrays {sorted(arrays)}, not the transfer, the {num_clients} clients"
                            f"{' and the validation set' if with_validation else ''} that {MANIFEST_FILE} lists",
                      out_dir)
    for name, values in arrays.items():
        if values.ndim != 1 or values.dtype != np.int64:
            raise _refuse(path, f"array {name} is {values.dtype} of shape {values.shape}, not 1-D int64", out_dir)
    return arrays


def _int_list(value: Any, length: int | None = None, *, below: int | None = None) -> list[int]:
    """``value`` as a list of non-negative ints (of ``length``, each below ``below``), else TypeError."""
    ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    wrong_size = ok and length is not None and len(value) != length
    if not ok or wrong_size or (below is not None and any(v >= below for v in value)):
        raise TypeError(f"{value!r:.80} is not a list of{'' if length is None else f' {length}'} non-negative integers"
                        f"{'' if below is None else f' below {below}'}")
    return value


def _manifest_fields(manifest: Any) -> dict[str, Any]:
    """The typed fields of a manifest; TypeError or KeyError naming the first that is wrong."""
    def field(name: str, kind: type):
        value = manifest[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise TypeError(f"{name} is {value!r:.80}, not {'an integer' if kind is int else f'a {kind.__name__}'}")
        return value

    num_classes = field("num_classes", int)
    client_sizes = _int_list(manifest["client_sizes"])
    client_class_counts = field("client_class_counts", list)
    for row in client_class_counts:
        _int_list(row, num_classes)
    if len(client_class_counts) != len(client_sizes):
        raise TypeError(f"client_class_counts has {len(client_class_counts)} rows for {len(client_sizes)} clients")
    groups = field("groups", dict)
    return {
        "sha256": field("sha256", str), "record_sha256": field("record_sha256", str),
        "validation_size": field("validation_size", int), "params": field("params", dict),
        "num_clients": len(client_sizes), "client_sizes": client_sizes,
        "partition": {
            "num_classes": num_classes,
            "class_counts": np.asarray(_int_list(manifest["class_counts"], num_classes), dtype=np.int64),
            "client_class_counts": np.asarray(client_class_counts, dtype=np.int64).reshape(-1, num_classes),
            "transfer_counts": np.asarray(_int_list(manifest["transfer_counts"], num_classes), dtype=np.int64),
            "groups": {name: _int_list(groups[name], below=num_classes)
                       for name in ("head", "medium", "tail", "minority")},
            "params": manifest["params"],
        },
    }


def load_partition(out_dir, spec: PartitionSpec | None = None) -> Partition:
    """Read a saved partition, refusing it unless its fields have the right types, the manifest hashes to
    its record_sha256, the indices hash to its sha256 and, when ``spec`` is given, it was made from exactly
    that spec."""
    out_dir = Path(out_dir)
    manifest_path = out_dir / MANIFEST_FILE
    try:
        manifest = read_json(manifest_path, what="partition manifest")
    except ValueError:
        raise _refuse(manifest_path, "is missing or not a valid JSON object", out_dir) from None
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise _refuse(manifest_path, f"has format_version {version!r}, this code reads {FORMAT_VERSION}", out_dir)
    try:
        fields = _manifest_fields(manifest)
        made_from = fields["params"]["spec_digest"]
    except (KeyError, TypeError, ValueError) as exc:
        raise _refuse(manifest_path, f"lacks or garbles a field ({exc})", out_dir) from None
    try:
        sealed = record_sha256(manifest) == fields["record_sha256"]
    except ValueError:  # a NaN or infinity somewhere in it
        sealed = False
    if not sealed:
        raise _refuse(manifest_path, "was changed after it was written (its fields no longer hash to its "
                                     "record_sha256)", out_dir)
    if spec is not None and made_from != spec.digest:
        differing = sorted(key for key, value in spec.to_dict().items() if manifest["params"].get(key) != value)
        raise PartitionError(
            f"partition {out_dir} was made with other parameters than this job ({', '.join(differing) or 'spec'} "
            f"differ); delete {out_dir} and rerun the partition step (or `fedakd partition`)"
        )
    arrays = _read_indices(out_dir / INDICES_FILE, fields["num_clients"], fields["validation_size"] > 0, out_dir)
    clients = [arrays[f"client_{i}"] for i in range(fields["num_clients"])]
    validation = arrays.get("validation", np.zeros(0, dtype=np.int64))
    found_sha = partition_sha256(arrays["transfer"], clients, validation)
    if found_sha != fields["sha256"]:
        raise _refuse(out_dir / INDICES_FILE, f"has sha256 {found_sha}, but {MANIFEST_FILE} records "
                                              f"{fields['sha256']} (changed or from another run)", out_dir)
    return Partition(client_indices=clients, transfer_indices=arrays["transfer"], validation_indices=validation,
                     sha256=found_sha, **fields["partition"])


def _check_labels(labels, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise PartitionError(f"labels must be a 1-D integer array, got {labels.dtype} of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise PartitionError(f"labels run from {labels.min()} to {labels.max()}, outside 0..{num_classes - 1}; "
                             f"check num_classes for this dataset")
    return labels.astype(np.int64, copy=False)


# -- the stages ------------------------------------------------------------------------------
def _draw_per_class(labels: np.ndarray, candidates: np.ndarray, num_classes: int, per_class: int, rng,
                    key: str) -> np.ndarray:
    """``per_class`` examples of every class from ``candidates`` (sorted indices), seeded."""
    chosen = []
    for c in range(num_classes):
        members = candidates[labels[candidates] == c]
        if members.size < per_class:
            raise PartitionError(f"class {c} has {members.size} training examples left, fewer than "
                                 f"{key} = {per_class}; lower federation.{key}")
        chosen.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _imbalance_pool(labels: np.ndarray, pool: np.ndarray, num_classes: int, imbalance: dict, rng):
    """Subsample the pool to the profile; returns (kept indices, per-class counts, minority classes or None)."""
    available = np.bincount(labels[pool], minlength=num_classes)
    n_max = int(available.min())
    if imbalance.get("n_max") is not None and imbalance["n_max"] < n_max:
        n_max = int(imbalance["n_max"])  # a smaller pool, asked for by name
    elif imbalance["kind"] == "none":
        return pool, available, None
    if imbalance["kind"] == "none":
        by_rank = [n_max] * num_classes
    elif imbalance["kind"] == "longtail":
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
        f"split.min_size or the number of clients ({clients})"
        + (" (or raise split.max_retries, at most 10000)" if split["max_retries"] < 1000 else "")
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


def make_partition(labels: np.ndarray, num_classes: int, spec: PartitionSpec) -> Partition:
    """Set aside the transfer and validation sets, impose the global imbalance, split the pool over the clients."""
    labels = _check_labels(labels, num_classes)
    everything = np.arange(labels.size, dtype=np.int64)
    transfer = _draw_per_class(labels, everything, num_classes, spec.proxy_per_class,
                               numpy_rng(spec.seed, PARTITION_TRANSFER), "proxy_per_class")
    pool = np.setdiff1d(everything, transfer, assume_unique=True)
    validation = np.zeros(0, dtype=np.int64)
    if spec.validation_per_class:  # its own stream, drawn only when asked: without it nothing else moves
        validation = _draw_per_class(labels, pool, num_classes, spec.validation_per_class,
                                     numpy_rng(spec.seed, PARTITION_VALIDATION), "validation_per_class")
        pool = np.setdiff1d(pool, validation, assume_unique=True)
    if np.any(np.bincount(labels[pool], minlength=num_classes) == 0):
        missing = np.flatnonzero(np.bincount(labels[pool], minlength=num_classes) == 0).tolist()
        raise PartitionError(f"classes {missing} have no training examples left for the clients "
                             f"(proxy_per_class = {spec.proxy_per_class}, validation_per_class = "
                             f"{spec.validation_per_class}); lower them")
    kept, class_counts, minority = _imbalance_pool(labels, pool, num_classes, spec.imbalance,
                                                   numpy_rng(spec.seed, PARTITION_IMBALANCE))
    client_indices = _split_pool(labels, kept, num_classes, spec)
    client_class_counts = np.stack([np.bincount(labels[part], minlength=num_classes) for part in client_indices])
    held = client_class_counts.sum(axis=0)  # = class_counts, except for classes a `classes` split left unused
    balanced = spec.imbalance["kind"] == "none"  # the pool's natural counts are not a skew to report
    unused = [int(c) for c in np.flatnonzero(held == 0)]
    groups = class_groups(np.where(held > 0, 1, 0) if balanced else held,
                          None if minority is None else [c for c in minority if c not in unused])
    params = {
        **spec.to_dict(), "spec_digest": spec.digest, "num_classes": int(num_classes),
        "train_size": int(labels.size), "pool_size": int(pool.size), "imbalanced_pool_size": int(kept.size),
        "imbalanced_pool_counts": [int(n) for n in class_counts], "unused_classes": unused,
    }
    return Partition(
        client_indices=client_indices,
        transfer_indices=transfer,
        validation_indices=validation,
        num_classes=int(num_classes),
        class_counts=held.astype(np.int64),
        client_class_counts=client_class_counts,
        transfer_counts=np.bincount(labels[transfer], minlength=num_classes).astype(np.int64),
        groups=groups,
        params=params,
        sha256=partition_sha256(transfer, client_indices, validation),
    )


def _split_pool(labels: np.ndarray, kept: np.ndarray, num_classes: int, spec: PartitionSpec) -> list[np.ndarray]:
    """The imbalanced pool over the clients (sorted int64 index arrays), every client holding something."""
    clients, split = spec.clients, spec.split
    if clients > kept.size:
        raise PartitionError(f"federation.clients = {clients} exceeds the {kept.size} examples in the pool; "
                             f"use fewer clients or a smaller imbalance factor")
    if split["min_size"] * clients > kept.size:
        raise PartitionError(f"split.min_size = {split['min_size']} for each of {clients} clients needs "
                             f"more than the {kept.size} examples in the pool; lower split.min_size or the clients")
    rng = numpy_rng(spec.seed, PARTITION_SPLIT)
    kind = split["kind"]
    if kind == "iid":
        parts = _split_iid(kept, clients, rng)
    elif kind == "dirichlet":
        parts = _split_dirichlet(labels, kept, num_classes, clients, split, rng)
    elif kind == "classes":
        parts = _split_classes(labels, kept, num_classes, clients, split["k"], rng)
    else:
        parts = _split_quantity(kept, clients, split, rng)
    client_indices = [np.sort(part).astype(np.int64) for part in parts]
    empty = [i for i, part in enumerate(client_indices) if part.size == 0]
    if empty:
        raise PartitionError(f"clients {empty} would get no examples (split {kind}); use fewer clients, "
                             f"a larger split.k or a smaller imbalance factor")
    return client_indices
