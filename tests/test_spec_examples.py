"""The spec's "Retrieving results" examples (sync and async), verbatim with `prefect` replaced
by `ferroflow`. Each example is the body of a test; printed output is checked with capsys."""


def test_calling_returns_the_result_directly():
    from ferroflow import flow, task

    @task
    def my_task():
        return 1

    @flow
    def my_flow():
        task_result = my_task()
        return task_result + 1

    result = my_flow()
    assert result == 2


def test_state_result_returns_the_result():
    from ferroflow import flow, task

    @task
    def my_task():
        return 1

    @flow
    def my_flow():
        state = my_task(return_state=True)
        return state.result() + 1

    state = my_flow(return_state=True)
    assert state.result() == 2


def test_future_result_returns_the_result():
    from ferroflow import flow, task

    @task
    def my_task():
        return 1

    @flow
    def my_flow():
        future = my_task.submit()
        return future.result() + 1

    result = my_flow()
    assert result == 2


def test_calling_raises_exceptions_as_in_normal_python(capsys):
    from ferroflow import flow, task

    @task
    def my_task():
        raise ValueError()

    @flow
    def my_flow():
        try:
            my_task()
        except ValueError:
            print("Oh no! The task failed.")

        return True

    my_flow()

    assert capsys.readouterr().out == "Oh no! The task failed.\n"


def test_return_state_lets_the_flow_check_for_failure(capsys):
    from ferroflow import flow, task

    @task
    def my_task():
        raise ValueError()

    @flow
    def my_flow():
        state = my_task(return_state=True)

        if state.is_failed():
            print("Oh no! The task failed. Falling back to '1'.")
            result = 1
        else:
            result = state.result()

        return result + 1

    result = my_flow()
    assert result == 2

    assert capsys.readouterr().out == "Oh no! The task failed. Falling back to '1'.\n"


def test_result_of_a_failed_state_raises(capsys):
    from ferroflow import flow, task

    @task
    def my_task():
        raise ValueError()

    @flow
    def my_flow():
        state = my_task(return_state=True)

        try:
            result = state.result()  # noqa: F841 (the spec's example, as written)
        except ValueError:
            print("Oh no! The state raised the error!")

        return True

    my_flow()

    assert capsys.readouterr().out == "Oh no! The state raised the error!\n"


def test_result_with_raise_on_failure_false_returns_the_exception(capsys):
    from ferroflow import flow, task

    @task
    def my_task():
        raise ValueError()

    @flow
    def my_flow():
        state = my_task(return_state=True)

        maybe_result = state.result(raise_on_failure=False)
        if isinstance(maybe_result, ValueError):
            print("Oh no! The task failed. Falling back to '1'.")
            result = 1
        else:
            result = maybe_result

        return result + 1

    result = my_flow()
    assert result == 2

    assert capsys.readouterr().out == "Oh no! The task failed. Falling back to '1'.\n"


def test_future_result_works_like_state_result(capsys):
    from ferroflow import flow, task

    @task
    def my_task():
        raise ValueError()

    @flow
    def my_flow():
        future = my_task.submit()

        try:
            future.result()
        except ValueError:
            print("Ah! Futures will raise the failure as well.")

        # You can ask it not to raise the exception too
        maybe_result = future.result(raise_on_failure=False)
        print(f"Got {type(maybe_result)}")

        return True

    my_flow()

    assert capsys.readouterr().out == (
        "Ah! Futures will raise the failure as well.\nGot <class 'ValueError'>\n"
    )


def test_async_calling_returns_the_result_directly():
    import asyncio

    from ferroflow import flow, task

    @task
    async def my_task():
        return 1

    @flow
    async def my_flow():
        task_result = await my_task()
        return task_result + 1

    result = asyncio.run(my_flow())
    assert result == 2


def test_async_state_result_with_fetch():
    import asyncio

    from ferroflow import flow, task

    @task
    async def my_task():
        return 1

    @flow
    async def my_flow():
        state = await my_task(return_state=True)
        result = await state.result(fetch=True)
        return result + 1

    async def main():
        state = await my_flow(return_state=True)
        assert await state.result(fetch=True) == 2

    asyncio.run(main())


def test_async_future_result():
    import asyncio

    from ferroflow import flow, task

    @task
    async def my_task():
        return 1

    @flow
    async def my_flow():
        future = await my_task.submit()
        result = await future.result()
        return result + 1

    result = asyncio.run(my_flow())
    assert result == 2
