"""The push-pull conversation: who says what, in which step, on a stream.

A push-pull (anti-entropy, and joins) is a short conversation on one stream
between an *initiator*, which opened it, and a *responder*. Either it is a
periodic exchange that starts with a cheap check, or a full exchange of four
messages (``docs/protocol.md``, "Stream messages")::

    initiator                         responder
      CHECK            ->                           (periodic only)
                       <-  CHECK_REPLY (same?)      responder closes; if not same,
                                                    the initiator opens a full one:
      INIT             ->
                       <-  REPLY
      RECONCILE        ->
                       <-  FETCH                    responder closes

This module names the roles and steps and says which message is expected
when (:func:`expects`); :class:`~gossipreg.core.node.NodeCore` handles each
message. It is pure and holds no state: an :class:`Exchange` per open
conversation lives in the node.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from . import codec
from .membership import Address

__all__ = ["Exchange", "Role", "Step", "expects", "role_of"]


class Role(enum.Enum):
    """This member's side of a stream."""

    INITIATOR = "out"
    """It opened the stream (stream ids ``("out", n)``)."""
    RESPONDER = "in"
    """It accepted the stream (stream ids ``("in", n)``)."""


def role_of(stream: tuple[str, int]) -> Role:
    """This member's role on ``stream``, from its id."""
    return Role.INITIATOR if stream[0] == "out" else Role.RESPONDER


class Step(enum.Enum):
    """Where an :class:`Exchange` stands: the last message this member sent."""

    CHECK_SENT = "check sent"
    """Initiator of a periodic exchange: waits for the check reply."""
    INIT_SENT = "init sent"
    """Initiator: waits for the reply."""
    REPLY_SENT = "reply sent"
    """Responder: waits for the reconcile."""
    RECONCILE_SENT = "reconcile sent"
    """Initiator: waits for the fetch."""


@dataclass(slots=True)
class Exchange:
    """One push-pull conversation under way."""

    address: Address
    """The peer."""
    join: bool
    """Whether it is this member's join (initiator) or a peer's (responder)."""
    deadline: float
    """When it is abandoned if unfinished."""
    step: Step
    """The last message this member sent."""
    regossip: bool = True
    """Gossip on the records it brings (not for this member's own join: it is
    the one missing everything, what it receives is no news to others)."""


#: Each stream message: the role that receives it, and the step its exchange must
#: be at (``None``: no exchange yet, the message starts one on the responder).
_EXPECTED: dict[int, tuple[Role, Step | None]] = {
    codec.PP_CHECK: (Role.RESPONDER, None),
    codec.PP_CHECK_REPLY: (Role.INITIATOR, Step.CHECK_SENT),
    codec.PP_INIT: (Role.RESPONDER, None),
    codec.PP_REPLY: (Role.INITIATOR, Step.INIT_SENT),
    codec.PP_RECONCILE: (Role.RESPONDER, Step.REPLY_SENT),
    codec.PP_FETCH: (Role.INITIATOR, Step.RECONCILE_SENT),
}


def expects(kind: int, role: Role, exchange: Exchange | None) -> bool:
    """Whether a stream message of type ``kind`` is expected by this member in
    ``role``, with ``exchange`` the conversation under way on that stream (if any).
    Anything else is out of order: the stream is closed."""
    expected = _EXPECTED.get(kind)
    if expected is None or expected[0] is not role:
        return False
    step = expected[1]
    return exchange is None if step is None else exchange is not None and exchange.step is step
