"""A saga as data (ordermesh.saga runs it): its steps in their order, each action beside its
compensation and the replies each awaits, and what its owner does when the forward path ends.

Guarantees:
- a step that has a compensation names the reply to it, and one without names none: a definition
  that breaks this is refused when it is made;
- `command_types` and `reply_types` are read from the steps themselves, so that the owner
  publishes every command the saga sends and subscribes to every reply it awaits; a command
  builder that declares no message type is refused;
- pure: it does no I/O (the owner's callbacks are given the transaction that ends the forward
  path, and run by the engine in it).
"""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ordermesh.events import Message
from ordermesh.store import Transaction

__all__ = ["Data", "SagaDefinition", "Step"]

# A saga's data: what its owner started it with, from which each command is built.
Data = Mapping[str, Any]


@dataclass(frozen=True)
class Step:
    """One step: the command that does it, its replies, and the command that undoes it."""

    name: str
    action: Callable[[Data], Message]
    succeeded: type[Message]
    failed: type[Message]
    compensation: Callable[[Data], Message] | None = None
    # The reply to the compensation.
    compensated: type[Message] | None = None
    # Why the step failed, from its failure reply.
    reason: Callable[[Message], str] = lambda reply: type(reply).__name__
    timeout_s: float = 30.0
    # The saga's state while this step's command is out, as the history shows it.
    state: str = ""

    @property
    def state_name(self) -> str:
        return self.state or self.name.upper()


@dataclass(frozen=True)
class SagaDefinition:
    name: str
    steps: Sequence[Step]
    # The id of the saga a reply belongs to (e.g. the order id it carries).
    saga_id_of: Callable[[Message], str]
    on_completed: Callable[[Transaction, Data], Awaitable[None]]
    on_failed: Callable[[Transaction, Data, str], Awaitable[None]]
    producer: str = ""

    def __post_init__(self) -> None:
        for step in self.steps:
            if (step.compensation is None) != (step.compensated is None):
                raise ValueError(f"{self.name}.{step.name}: a compensation needs its reply type")

    @property
    def command_types(self) -> list[type[Message]]:
        """Every command the saga sends (its steps' actions and compensations, by the message
        type each declares it returns): what its owner publishes to the participants."""
        types: list[type[Message]] = []
        for step in self.steps:
            for make in (step.action, step.compensation):
                if make is None:
                    continue
                made = typing.get_type_hints(make).get("return")
                if not (isinstance(made, type) and issubclass(made, Message)):
                    raise TypeError(f"{self.name}.{step.name}: {make!r} declares no message type")
                types.append(made)
        return list(dict.fromkeys(types))

    @property
    def reply_types(self) -> list[type[Message]]:
        """Every reply type the saga awaits: what the owner's reply consumer must subscribe to."""
        types: list[type[Message]] = []
        for step in self.steps:
            types += [step.succeeded, step.failed]
            if step.compensated is not None:
                types.append(step.compensated)
        return list(dict.fromkeys(types))
