"""The run engine: how flow and task calls become runs with states. Private; the public
surface is `ferroflow.flows`, `ferroflow.tasks`, `ferroflow.states`, `ferroflow.futures` and
`ferroflow.task_runners`."""
