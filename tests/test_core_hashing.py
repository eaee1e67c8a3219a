"""ferroflow._core hashing: reference vectors, streaming equals one-shot, thread safety."""

import pickle
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferroflow import _core
from ferroflow._core import Hasher, hash_buffers

# Reference vectors: BLAKE3 from its specification's test vectors; XXH3 from the xxHash reference
# implementation (`xxhsum -H3` / `-H2` of an empty file and of b"abc").
EMPTY_DIGESTS = {
    "blake3": "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    "xxh3-64": "2d06800538d394c2",
    "xxh3-128": "99aa06d3014798d86001c324468d497f",
}
BLAKE3_ABC = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"

# Larger than the 1 MiB from which BLAKE3 hashes on every core.
BIG = np.random.default_rng(7).integers(0, 256, size=3 * 2**20 + 17, dtype=np.uint8).tobytes()


def test_hash_algorithms_lists_the_three():
    assert _core.HASH_ALGORITHMS == ("blake3", "xxh3-64", "xxh3-128")


@pytest.mark.parametrize("algorithm", _core.HASH_ALGORITHMS)
def test_empty_input_matches_the_reference_vector(algorithm):
    assert Hasher(algorithm).hexdigest() == EMPTY_DIGESTS[algorithm]
    assert hash_buffers([], algorithm) == EMPTY_DIGESTS[algorithm]


def test_blake3_is_the_default_and_matches_its_reference_for_abc():
    assert Hasher().algorithm == "blake3"
    assert hash_buffers([b"abc"]) == BLAKE3_ABC


@pytest.mark.parametrize(("algorithm", "size"), [("blake3", 32), ("xxh3-64", 8), ("xxh3-128", 16)])
def test_digest_is_hexdigest_as_bytes_of_digest_size(algorithm, size):
    hasher = Hasher(algorithm)
    hasher.update(b"payload")
    assert hasher.digest_size == size
    assert len(hasher.digest()) == size
    assert hasher.digest().hex() == hasher.hexdigest()


@pytest.mark.parametrize("algorithm", _core.HASH_ALGORITHMS)
def test_incremental_updates_equal_one_shot_over_the_parallel_threshold(algorithm):
    hasher = Hasher(algorithm)
    for start in range(0, len(BIG), 1_000_003):
        hasher.update(BIG[start : start + 1_000_003])
    assert hasher.hexdigest() == hash_buffers([BIG], algorithm)


@pytest.mark.parametrize("algorithm", _core.HASH_ALGORITHMS)
def test_update_many_equals_hashing_the_concatenation(algorithm):
    parts = [b"alpha", bytearray(b"beta"), memoryview(b"gamma"), np.arange(10, dtype="int32"), BIG]
    joined = b"".join(bytes(part) for part in parts)
    hasher = Hasher(algorithm)
    hasher.update_many(iter(parts))
    assert hasher.hexdigest() == hash_buffers([joined], algorithm) == hash_buffers(parts, algorithm)


def test_pickle_buffers_and_numpy_arrays_hash_as_their_bytes():
    array = np.linspace(0, 1, 1000).reshape(10, 100)
    assert hash_buffers([pickle.PickleBuffer(array)]) == hash_buffers([array.tobytes()])


def test_copy_forks_the_state_and_digest_does_not_end_it():
    hasher = Hasher("xxh3-128")
    hasher.update(b"ab")
    fork = hasher.copy()
    hasher.digest()
    hasher.update(b"c")
    assert hasher.hexdigest() == hash_buffers([b"abc"], "xxh3-128")
    assert fork.hexdigest() == hash_buffers([b"ab"], "xxh3-128")


def test_unknown_algorithm_lists_the_valid_ones():
    with pytest.raises(
        ValueError, match='unknown hash algorithm "md5"; choose one of: blake3, xxh3-64, xxh3-128'
    ):
        Hasher("md5")
    with pytest.raises(ValueError, match="choose one of"):
        hash_buffers([b""], "sha256")


def test_non_contiguous_and_non_buffer_inputs_are_refused_clearly():
    with pytest.raises(ValueError, match="not C-contiguous"):
        Hasher().update(np.zeros((4, 4))[:, 1])
    with pytest.raises(TypeError, match="bytes-like object.*int"):
        hash_buffers([b"ok", 42])  # type: ignore[list-item]


def test_a_hasher_shared_between_threads_sees_every_update():
    hasher = Hasher("xxh3-64")
    chunk = b"x" * 100_000

    def work():
        for _ in range(20):
            hasher.update(chunk)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # All chunks are equal, so the order the threads took turns in does not change the result.
    assert hasher.hexdigest() == hash_buffers([chunk] * 80, "xxh3-64")


@settings(max_examples=80, deadline=None)
@given(parts=st.lists(st.binary(max_size=300), max_size=8), algorithm=st.sampled_from(_core.HASH_ALGORITHMS))
def test_any_split_hashes_like_the_whole(parts, algorithm):
    hasher = Hasher(algorithm)
    for part in parts:
        hasher.update(part)
    assert hasher.hexdigest() == hash_buffers([b"".join(parts)], algorithm)
