"""Contacts sort as a Dutch directory files them: by surname without its particles (tussenvoegsels)."""

from hipper.domain.contacts import make_contact, sort_contacts, surname_key


def test_surname_particles_are_ignored_when_sorting() -> None:
    assert [surname_key(name) for name in ("de Vries", "van der Berg", "Van 't Hek", "Jansen", "De")] == [
        "vries",
        "berg",
        "hek",
        "jansen",
        "de",
    ]
    people = [("Anna", "de Vries"), ("Bram", "Bakker"), ("Carla", "van der Berg"), ("Daan", "Wit")]
    contacts = [
        make_contact("group", i, first_name=first, last_name=last, numbers=[]) for i, (first, last) in enumerate(people)
    ]
    assert [c.last_name for c in sort_contacts(contacts, "last_name")] == ["Bakker", "van der Berg", "de Vries", "Wit"]
