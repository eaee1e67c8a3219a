import json
import os
import pickle
import uuid

import pytest

from ferroflow.ids import clock_ordered_uuid, clock_ordered_uuid_and_text


def test_clock_ordered_ids_are_unique_and_sort_in_creation_order():
    ids = [clock_ordered_uuid() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert {run_id.version for run_id in ids} == {8}
    assert {run_id.variant for run_id in ids} == {uuid.RFC_4122}
    # The leading 32 bits are the clock's microseconds (mod 2**32): successive ids sort in
    # creation order, so the store appends to its indexes instead of inserting at random.
    leading = [run_id.int >> 96 for run_id in ids]
    steps = [(later - earlier) % 2**32 for earlier, later in zip(leading, leading[1:])]
    assert all(step < 10**6 for step in steps)  # never backwards (a wrap is a small step too)
    # The random part keeps ids made in the same microsecond apart.
    assert len({run_id.int & (2**90 - 1) for run_id in ids}) == len(ids)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_repeat_its_parents_ids():
    random_part = 2**90 - 1
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # the child: send the random parts of a few ids, then leave at once
        os.write(writing, json.dumps([clock_ordered_uuid().int & random_part for _ in range(5)]).encode())
        os._exit(0)
    os.close(writing)
    parents = {clock_ordered_uuid().int & random_part for _ in range(5)}
    with os.fdopen(reading) as pipe:
        childs = set(json.loads(pipe.read()))
    os.waitpid(child, 0)
    assert len(childs) == 5 and not parents & childs


def test_an_id_made_with_its_text_is_an_ordinary_uuid_and_its_text_is_its_str():
    for _ in range(200):
        run_id, text = clock_ordered_uuid_and_text()
        assert type(run_id) is uuid.UUID and run_id.version == 8 and run_id.variant == uuid.RFC_4122
        assert text == str(run_id) and uuid.UUID(text) == run_id == uuid.UUID(int=run_id.int)
        assert hash(run_id) == hash(uuid.UUID(text)) and run_id.is_safe is uuid.SafeUUID.unknown
        assert pickle.loads(pickle.dumps(run_id)) == run_id
        assert json.dumps(str(run_id)) == json.dumps(text)
