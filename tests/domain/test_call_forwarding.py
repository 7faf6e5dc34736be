import pytest

from hipper.domain.context import UserContext
from hipper.domain.errors import InvalidSetting, NotLicensed, StepUpRequired
from hipper.domain.licences import ALL_LICENCES
from hipper.domain.services import SERVICES, change

CTX = UserContext(
    user_id=1,
    extension="201",
    numbers={"direct": "+31201234101", "mobile": "+31612345601", "company": "+31201234000"},
    licences=ALL_LICENCES,
)


def _change(service: str, proposed: dict[str, object], stepped_up: bool = True, ctx: UserContext = CTX):
    cls = SERVICES[service]
    return change(cls, cls(), proposed, ctx, stepped_up=stepped_up)


def test_forward_always_normalises_the_destination() -> None:
    new = _change("call-forwarding-always", {"active": True, "destination": "0612345678"})
    assert new.model_dump()["destination"] == "+31612345678"


def test_forward_always_to_voicemail_needs_no_number() -> None:
    new = _change("call-forwarding-always", {"active": True, "to_voicemail": True}, stepped_up=False)
    assert new.model_dump()["to_voicemail"] is True


@pytest.mark.parametrize("own", ["201", "+31201234101", "0612345601"])
def test_forwarding_to_ones_own_number_is_refused(own: str) -> None:
    with pytest.raises(InvalidSetting) as info:
        _change("call-forwarding-busy", {"active": True, "destination": own})
    assert info.value.field == "destination"


def test_fixed_number_may_forward_to_own_mobile_but_not_to_itself() -> None:
    new = _change("call-forwarding-always-secondary", {"active": True, "destination": "0612345601"})
    assert new.model_dump()["destination"] == "+31612345601"
    with pytest.raises(InvalidSetting):
        _change("call-forwarding-always-secondary", {"active": True, "destination": "+31201234101"})


def test_active_forwarding_needs_a_destination() -> None:
    with pytest.raises(InvalidSetting) as info:
        _change("call-forwarding-no-answer", {"active": True})
    assert "destination" in info.value.reason


def test_a_new_number_needs_a_step_up_but_switching_off_does_not() -> None:
    with pytest.raises(StepUpRequired):
        _change("call-forwarding-busy", {"active": True, "destination": "0612345678"}, stepped_up=False)
    cls = SERVICES["call-forwarding-busy"]
    current = cls(active=True, destination="+31612345678")
    new = change(cls, current, {"active": False, "destination": "+31612345678"}, CTX, stepped_up=False)
    assert new.model_dump()["active"] is False


def test_unlicensed_service_is_refused() -> None:
    ctx = UserContext(user_id=1, extension="201", licences=frozenset({"do-not-disturb"}))
    with pytest.raises(NotLicensed):
        _change("call-forwarding-always", {"active": False}, ctx=ctx)


def test_fixed_number_forwarding_needs_fixed_mobile_licence() -> None:
    ctx = UserContext(user_id=1, extension="201", licences=frozenset({"call-forwarding-always-secondary"}))
    with pytest.raises(NotLicensed):
        _change("call-forwarding-always-secondary", {"active": False}, ctx=ctx)
