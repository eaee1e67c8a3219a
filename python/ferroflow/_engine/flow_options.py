"""What a flow's options do around its run, before its first attempt and after its end:
`log_prints`, `validate_parameters`, `flow_run_name`, and the state hooks."""

from __future__ import annotations

from typing import Any

from ferroflow._engine import prints
from ferroflow._engine.definitions import FlowDefinition
from ferroflow._engine.hooks import call_hooks, call_hooks_async, flow_hooks_for
from ferroflow._engine.parameters import LazyParameters, bind_with_defaults
from ferroflow._engine.run_book import book_of
from ferroflow._engine.runs import FlowRun, failed_state
from ferroflow._engine.templates import rename, run_name
from ferroflow._engine.validation import validated_arguments
from ferroflow.context import FlowRunContext, TaskRunContext
from ferroflow.states import State

_RUN_KIND = "Flow run"

Arguments = tuple[tuple[Any, ...], dict[str, Any]]


def start_logging_prints(flow: FlowDefinition, context: FlowRunContext) -> bool:
    """Decide whether this flow run logs its prints — the flow's `log_prints`, else its parent
    flow run's, else not — and if so redirect prints until `prints.restore()`. Call it before
    the run's context is set (it reads the parent's)."""
    logs_prints = flow.log_prints
    if logs_prints is None:
        parent = TaskRunContext.get()
        parent_flow = parent.flow_run_context if parent is not None else FlowRunContext.get()
        logs_prints = parent_flow is not None and book_of(parent_flow).log_prints
    book_of(context).log_prints = logs_prints
    if logs_prints:
        prints.redirect()
    return logs_prints


def arguments_for_run(
    flow: FlowDefinition, context: FlowRunContext, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Arguments | State:
    """The arguments the flow's function is called with in every attempt, validated and
    converted by its type hints (`validate_parameters`), and the run named (`flow_run_name`).
    Returns a Failed state instead when either fails: the run ends without running its function
    (as in Prefect 2, where invalid parameters fail the run before it starts)."""
    passed = (args, kwargs)
    try:
        if flow.should_validate_parameters:
            args, kwargs = validated_arguments(f"Flow {flow.name!r}", flow.fn, args, kwargs)
        book_of(context).parameters = LazyParameters(flow.fn, args, kwargs)
        if flow.flow_run_name is not None:
            name = run_name("flow_run_name", flow.flow_run_name, bind_with_defaults(flow.fn, args, kwargs))
            rename(context.flow_run, name, LazyParameters(flow.fn, *passed))
    except Exception as exc:
        return failed_state(_RUN_KIND, exc)
    return args, kwargs


def call_state_hooks(flow: FlowDefinition, flow_run: FlowRun) -> None:
    """Call the flow's hooks for the state its run is in (`on_running` at the first attempt's
    start; `on_completion`, `on_failure`, `on_cancellation`, `on_crashed` at its end)."""
    hooks = flow_hooks_for(flow, flow_run.state)
    if hooks:
        call_hooks(hooks, flow, flow_run, flow_run.state)


async def call_state_hooks_async(flow: FlowDefinition, flow_run: FlowRun) -> None:
    hooks = flow_hooks_for(flow, flow_run.state)
    if hooks:
        await call_hooks_async(hooks, flow, flow_run, flow_run.state)
