import pytest

from ferroflow.task_runners import ConcurrentTaskRunner, SequentialTaskRunner


@pytest.fixture(
    params=[SequentialTaskRunner, ConcurrentTaskRunner], ids=["sequential", "concurrent"]
)
def task_runner(request):
    """Each task runner, for behaviour that must not depend on the runner."""
    return request.param()
