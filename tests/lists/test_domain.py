"""The pure rules of the lists: contact search and sort, vCard parsing, call records, app settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hipper.domain import app_settings
from hipper.domain.call_logs import duration_seconds, validate_record
from hipper.domain.contacts import make_contact, matches, parse_vcards, sort_contacts
from hipper.domain.errors import InvalidSetting

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def contact(first: str, last: str, number: str = "+31612345678", company: str = "", id_: int = 1) -> object:
    return make_contact(
        "personal", id_, first_name=first, last_name=last, company_name=company, numbers=[("other", number)]
    )


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("an", True),
        ("ÅNNA", True),
        ("anna de", True),
        ("06 1234", True),
        ("+316123", True),
        ("0031612", False),  # the international prefix as digits is not how the number is shown
        ("12345678", True),
        ("anna 999", False),
        ("vries", True),
        ("bakker", True),
    ],
)
def test_search(query: str, found: bool) -> None:
    anna = make_contact(
        "group",
        1,
        first_name="Anna",
        last_name="de Vries",
        company_name="Bakker BV",
        numbers=[("mobile", "+31612345678"), ("extension", "201")],
    )
    assert matches(anna, query) is found


def test_whatsapp_only_on_dutch_mobile_numbers() -> None:
    flags = make_contact(
        "group",
        1,
        first_name="A",
        last_name="B",
        numbers=[
            ("extension", "206"),
            ("direct", "+31201234567"),
            ("mobile", "+31612345678"),
            ("other", "+4917612345678"),
        ],
    )
    assert [n.whatsapp for n in flags.numbers] == [False, False, True, False]
    assert flags.whatsapp is True


def test_sort_by_first_or_last_name_ignoring_case_and_accents() -> None:
    people = [
        contact("émile", "Zola", id_=1),
        contact("Bram", "appel", id_=2),
        contact("", "", company="Citroën", id_=3),
    ]
    assert [c.id for c in sort_contacts(people, "first_name")] == [2, 3, 1]  # type: ignore[attr-defined]
    assert [c.id for c in sort_contacts(people, "last_name")] == [2, 3, 1]  # type: ignore[attr-defined]
    people.append(contact("Aart", "Zwaan", id_=4))
    assert [c.id for c in sort_contacts(people, "first_name")] == [4, 2, 3, 1]  # type: ignore[attr-defined]
    assert [c.id for c in sort_contacts(people, "last_name")] == [2, 3, 1, 4]  # type: ignore[attr-defined]


def test_vcard_21_with_quoted_printable_and_folded_lines() -> None:
    text = (
        "BEGIN:VCARD\r\nVERSION:2.1\r\nN;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:M=C3=BCller;J=C3=BCrgen;;;\r\n"
        "TEL;CELL:+49 151\r\n 23456789\r\nEND:VCARD\r\n"
    )
    entries, skipped = parse_vcards(text)
    assert skipped == []
    assert [(e.first_name, e.last_name, e.number) for e in entries] == [("Jürgen", "Müller", "+4915123456789")]


def test_vcard_without_structured_name_uses_the_formatted_name() -> None:
    entries, _ = parse_vcards("BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Jan van Dijk\r\nTEL:0201234567\r\nEND:VCARD\r\n")
    assert [(e.first_name, e.last_name) for e in entries] == [("Jan van", "Dijk")]


def test_not_a_vcard() -> None:
    with pytest.raises(InvalidSetting, match="no vCard"):
        parse_vcards("just text")
    entries, skipped = parse_vcards("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n")
    assert entries == [] and [s.reason for s in skipped] == ["not a vCard but VCALENDAR"]


def test_call_records() -> None:
    record = validate_record(
        kind="received", started_at=NOW, answered_at=NOW + timedelta(seconds=3), ended_at=NOW + timedelta(seconds=93)
    )
    assert duration_seconds(record.answered_at, record.ended_at) == 90
    assert duration_seconds(None, NOW) == 0
    for fields, field in (
        ({"kind": "missed", "started_at": NOW, "answered_at": NOW}, "body"),
        ({"kind": "placed", "started_at": NOW, "ended_at": NOW - timedelta(seconds=1)}, "body"),
        ({"kind": "placed", "started_at": datetime(2026, 1, 1)}, "body"),
        ({"kind": "placed", "started_at": NOW, "remote_number": "9" * 65}, "remote_number"),
    ):
        with pytest.raises(InvalidSetting) as refused:
            validate_record(**fields)
        assert refused.value.field == field


def test_app_settings_quick_settings_rules() -> None:
    licensed = ["do-not-disturb", "voicemail", "night-forwarding"]
    current = app_settings.defaults(licensed)
    assert current.quick_settings == ["do-not-disturb", "voicemail"]
    changed = app_settings.change(current, {"quick_settings": ["voicemail", "do-not-disturb"]}, licensed)
    assert changed.quick_settings == ["voicemail", "do-not-disturb"]
    with pytest.raises(InvalidSetting) as refused:
        app_settings.change(current, {"quick_settings": ["voicemail", "night-forwarding"]}, licensed)
    assert refused.value.field == "quick_settings.1"
    assert changed.visible_to(["voicemail"]).quick_settings == ["voicemail"]
