import json

import pytest

from ferroflow.runstore import ResultRef


def test_result_references_describe_themselves_and_refuse_what_json_cannot_hold():
    assert ResultRef.literal(None).describe() == "literal null"
    assert (
        ResultRef.persisted("local-file-system/dev", "k1", "json").describe()
        == "k1 (json) in local-file-system/dev"
    )
    local = json.dumps({"type": "local-file-system", "basepath": "/data/results"})
    assert ResultRef.persisted(local, "0123456789abcdef", "pickle").describe() == (
        "0123456789ab (pickle) in /data/results"
    )
    with pytest.raises(ValueError, match="JSON serializable.*ResultRef.persisted"):
        ResultRef.literal(object())
    with pytest.raises(ValueError, match="no inline value"):
        _ = ResultRef.persisted("s", "k", "pickle").value


def test_result_references_translate_to_and_from_the_results_module_form(store):
    from ferroflow.results import LiteralResult, UnpersistedResult, result_from_reference

    literal = ResultRef.from_result_reference(LiteralResult(True).to_reference())
    assert literal == ResultRef.literal(True)
    assert result_from_reference(literal.to_result_reference()).get() is True
    assert ResultRef.from_result_reference(UnpersistedResult(1).to_reference()) is None

    description = {"type": "local-file-system", "basepath": "/data/results"}
    persisted = {
        "type": "reference",
        "storage": description,
        "storage_key": "9b1c",
        "serializer_type": "pickle",
    }
    store.record_task_run("t1", "t", "t")
    store.record_state("t1", "COMPLETED", "Completed", result=ResultRef.from_result_reference(persisted))
    assert store.list_states("t1")[1].result.to_result_reference() == persisted
    slug = {**persisted, "storage": "local-file-system/dev"}
    assert ResultRef.from_result_reference(slug).to_result_reference() == slug
    with pytest.raises(ValueError, match="Unknown result reference type 'blob'"):
        ResultRef.from_result_reference({"type": "blob"})
