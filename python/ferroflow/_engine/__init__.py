"""The run engine: how flow and task calls become runs with states. Private; the public
surface is `ferroflow.flows`, `ferroflow.tasks`, `ferroflow.states`, `ferroflow.futures` and
`ferroflow.task_runners`, and only `flows` and `tasks` import it.

- `flow_engine`, `task_engine`: the drivers of a flow run and of a task run (call, submit, map);
  `task_engine.execute_task_run` runs a `task_run_request.TaskRunRequest` in any process.
- `runs`: run records (`FlowRun`, `TaskRun`), the one place a run changes state, attempts.
- `run_book`: `RunBook`, all bookkeeping of one flow run (carried by its context).
- `caching`: results from before (flow retries, the task cache); `recording`: the run store.
- `parameters`: binding a call's arguments to parameter names; `inputs`: futures as inputs.
- `bodies`: calling the user's function under its timeout; `options`: checks of decorator
  options; `definitions`: what the engine reads of a flow or task, as protocols.
"""
