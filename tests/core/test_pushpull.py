"""The push-pull conversation's table (gossipreg.core.pushpull): which message is expected when."""

from __future__ import annotations

import pytest

from gossipreg.core import codec
from gossipreg.core.membership import Address
from gossipreg.core.pushpull import Exchange, Role, Step, expects, role_of

PEER = Address("10.0.0.2", 7946)
AT = {step: Exchange(PEER, False, 10.0, step) for step in Step}


def test_the_role_follows_the_stream_id() -> None:
    assert role_of(("out", 3)) is Role.INITIATOR
    assert role_of(("in", 3)) is Role.RESPONDER


# (message, role, exchange step or None) for every message at the one point it is expected.
EXPECTED = [
    (codec.PP_CHECK, Role.RESPONDER, None),
    (codec.PP_CHECK_REPLY, Role.INITIATOR, Step.CHECK_SENT),
    (codec.PP_INIT, Role.RESPONDER, None),
    (codec.PP_REPLY, Role.INITIATOR, Step.INIT_SENT),
    (codec.PP_RECONCILE, Role.RESPONDER, Step.REPLY_SENT),
    (codec.PP_FETCH, Role.INITIATOR, Step.RECONCILE_SENT),
]


@pytest.mark.parametrize(("kind", "role", "step"), EXPECTED)
def test_each_message_is_expected_at_exactly_one_point(kind: int, role: Role, step: Step | None) -> None:
    points = [(r, s) for r in Role for s in (None, *Step) if expects(kind, r, None if s is None else AT[s])]
    assert points == [(role, step)]


def test_unknown_messages_are_never_expected() -> None:
    for kind in (0, 15, 22, 99, codec.ALIVE):
        assert not any(expects(kind, r, ex) for r in Role for ex in (None, *AT.values()))
