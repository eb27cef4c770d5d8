"""Every derived seed of the package comes from here.

A run has one seed per stage in its config (``train.seed``, ``evaluate.seed``, ``generate.seed``);
everything random inside the stage (a rank's augmentations, an epoch's shuffle, a fold's
classifier, a shard's Pythia) draws from a *stream* of it, named by a tuple of integers such as
(stream id, epoch, rank). ``derive_seed`` hashes (seed, *stream) with numpy's ``SeedSequence``,
so streams are independent of each other and of the order in which they are asked for.

``splitmix64`` is the 64-bit mixer behind hash-based assignments (splits, folds, the probe's
fit/score halves): a bijection with full avalanche, so the result is uniform for any pattern of
event ids, sequential ones included (Steele, Lea, Flood 2014).
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

__all__ = ["derive_seed", "name_key", "seed_sequence", "splitmix64", "unit_interval"]

U64 = npt.NDArray[np.uint64]


def seed_sequence(
    seed: int, *stream: int, spawn_key: tuple[int, ...] = ()
) -> np.random.SeedSequence:
    """numpy's ``SeedSequence`` of (seed, *stream), for code that spawns children of its own."""
    return np.random.SeedSequence([seed, *stream], spawn_key=spawn_key)


def derive_seed(seed: int, *stream: int, bits: int = 32) -> int:
    """An independent seed for the stream ``stream`` of ``seed``.

    Args:
        seed: the stage's seed from config (a non-negative integer).
        stream: integers naming the stream, e.g. (stream id, epoch, rank).
        bits: 32 (a numpy- and sklearn-compatible seed) or 63 (a torch generator seed).
    """
    if bits == 32:
        return int(seed_sequence(seed, *stream).generate_state(1, dtype=np.uint32)[0])
    if bits == 63:
        state = seed_sequence(seed, *stream).generate_state(2, dtype=np.uint32)
        return int(state[0]) << 31 ^ int(state[1])
    raise ValueError(f"bits must be 32 or 63, got {bits}")


def splitmix64(x: U64) -> U64:
    """The splitmix64 finaliser, elementwise on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def name_key(name: str, salt: str = "") -> np.uint64:
    """A 64-bit key of a text (a dataset's name), from BLAKE2b of ``salt`` and ``name``."""
    digest = hashlib.blake2b(f"{salt}\x00{name}".encode(), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))


def unit_interval(x: U64) -> npt.NDArray[np.float64]:
    """The top 53 bits of uint64 values as floats in [0, 1)."""
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
