import pytest

from ferroflow.runstore import parameters, summarize_parameters


def test_parameter_summaries_are_bounded_and_survive_a_failing_repr():
    class Hostile:
        def __repr__(self):
            raise RuntimeError("no")

    summary = summarize_parameters({"rows": list(range(100_000)), "text": "x" * 10_000, "odd": Hostile()})
    assert len(summary) <= 500
    assert summary.startswith("rows=[0, 1, 2, 3, 4, 5, ...], text='xxx")
    assert "odd=<Hostile" in summary
    assert len(summarize_parameters({f"p{i}": "v" * 50 for i in range(100)})) == 500


@pytest.mark.parametrize(
    "value",
    [
        [1, 2, 3],
        (1,),
        (),
        [1.5, None, "ab", True, -(2**63)],
        [7] * 6,
        [7] * 7,
        [[1]],
        [2**70],
        ("x" * 70,),
    ],
)
def test_small_lists_and_tuples_are_summarized_as_the_bounded_repr_has_them(value):
    assert summarize_parameters({"v": value}) == "v=" + parameters._summary_repr.repr(value)
