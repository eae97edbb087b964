"""Embedding vectors as recall keeps them: unit length, float32, as bytes (4 bytes a dimension),
so similarity is a dot product and a vector costs the same on every backend (a plain binary
column: no vector extension is needed, and recall scores only the few hundred messages its words
found, see `fulltext.rank_recalled`)."""

from __future__ import annotations

import math
import operator
import sys
from array import array
from collections.abc import Sequence

from memchat.errors import ProviderError


def packed(values: Sequence[float]) -> bytes:
    """`values` scaled to unit length (zeros stay zeros: similar to nothing), as little-endian
    float32 bytes."""
    norm = math.sqrt(math.fsum(v * v for v in values))
    if not math.isfinite(norm):
        raise ProviderError("the embedding model answered a vector that is not made of numbers", kind="rejected")
    floats = array("f", (v / norm if norm else 0.0 for v in values))
    if sys.byteorder != "little":
        floats.byteswap()
    return floats.tobytes()


def unpacked(data: bytes) -> array:
    floats = array("f")
    floats.frombytes(data)
    if sys.byteorder != "little":
        floats.byteswap()
    return floats


def similarity(a: array, b: array) -> float:
    """Cosine similarity of two unit vectors; vectors of different lengths (made by another
    model) are not similar at all."""
    if len(a) != len(b):
        return 0.0
    return sum(map(operator.mul, a, b))
