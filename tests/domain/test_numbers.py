import pytest

from hipper.domain.numbers import NumberError, is_dutch_mobile, normalise


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("0612345678", "+31612345678"),
        ("06-12345678", "+31612345678"),
        ("+31 6 12345678", "+31612345678"),
        ("0031612345678", "+31612345678"),
        ("020 123 4567", "+31201234567"),
        ("+44 20 7946 0958", "+442079460958"),
        ("201", "201"),
        ("4001", "4001"),
    ],
)
def test_normalise_accepts_dutch_and_international_forms(typed: str, expected: str) -> None:
    assert normalise(typed) == expected


@pytest.mark.parametrize("typed", ["", "abc", "06123", "+3161234567890123", "0", "0800-nope", "06-1234567a"])
def test_normalise_refuses_what_is_no_number(typed: str) -> None:
    with pytest.raises(NumberError):
        normalise(typed)


def test_whatsapp_button_only_for_dutch_mobiles() -> None:
    assert is_dutch_mobile("0612345678")
    assert is_dutch_mobile("+31612345678")
    assert not is_dutch_mobile("0201234567")
    assert not is_dutch_mobile("201")
