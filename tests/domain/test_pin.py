import pytest

from hipper.domain.errors import InvalidSetting
from hipper.domain.pin import check_pin


@pytest.mark.parametrize("pin", ["0000", "1234", "4321", "1111", "1212", "123456", "12", "123456789", "12a4"])
def test_trivial_or_malformed_pins_are_refused(pin: str) -> None:
    with pytest.raises(InvalidSetting):
        check_pin(pin)


@pytest.mark.parametrize("pin", ["2580", "7391", "90210", "31415926"])
def test_reasonable_pins_are_accepted(pin: str) -> None:
    check_pin(pin)
