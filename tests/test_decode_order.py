"""The order the docker writer's decoders read blobs in, and the download ranks it gives."""

from __future__ import annotations

from dockerdrag.decode_order import decoder_ranks, largest_first, next_to_decode


def test_each_blob_ranks_where_it_starts_in_its_decoders_run() -> None:
    """Two decoders: each takes the largest blob left when it is free; a blob's rank is
    the bytes its decoder reads before it."""
    sizes = [("a", 120), ("b", 100), ("c", 20), ("d", 160), ("e", 400), ("f", 140)]
    # e: decoder 1 from 0; d: decoder 2 from 0; f: decoder 2 (free at 160) from 160;
    # a: decoder 2 (free at 300) from 300; b: decoder 1 (free at 400) from 400;
    # c: decoder 2 (free at 420) from 420.
    assert decoder_ranks(sizes) == {"e": 0, "d": 0, "f": 160, "a": 300, "b": 400, "c": 420}


def test_blobs_of_one_size_are_taken_in_the_archive_order() -> None:
    assert decoder_ranks([("x", 10), ("y", 10), ("z", 10)], decoders=1) == {
        "x": 0,
        "y": 10,
        "z": 20,
    }
    assert sorted([largest_first(10, 2), largest_first(10, 1), largest_first(30, 3)]) == [
        largest_first(30, 3),
        largest_first(10, 1),
        largest_first(10, 2),
    ]


def test_a_blob_in_whole_goes_before_a_larger_one_still_arriving() -> None:
    """A free decoder takes the largest blob, unless it is still arriving and another is
    in whole: then the largest of those (read at once, not left for the end)."""
    keys = [
        largest_first(400, 0),
        largest_first(30, 1),
        largest_first(20, 2),
        largest_first(100, 3),
    ]
    assert next_to_decode(keys, lambda index: True) == 0
    assert next_to_decode(keys, lambda index: False) == 0
    assert next_to_decode(keys, lambda index: index in (1, 2)) == 1
    assert next_to_decode(keys, lambda index: index == 2) == 2
    assert next_to_decode(keys, lambda index: index in (0, 2)) == 0
    assert next_to_decode([largest_first(5, 0)], lambda index: False) == 0
