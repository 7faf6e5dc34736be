"""Administration (SPEC M1) shared by the admin API, the `hipper` CLI and the demo.

Every rule lives here once: numbers are normalised, usernames/numbers/extensions are checked for uniqueness
*before* the database would refuse them (so callers get a reason naming the field instead of an IntegrityError),
and every change queues its outbox event in the same transaction. Callers commit.

Errors: `InvalidSetting` (bad value, answered 422), `Conflict` (already taken, 409), `NotFound` (404).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.domain import licences as licence_rules
from hipper.domain.errors import DomainError, InvalidSetting, NotLicensed
from hipper.domain.numbers import NumberError, is_extension, normalise
from hipper.domain.pin import check_password as check_user_password
from hipper.passwords import Hasher
from hipper.store import service_settings
from hipper.store.events import add_event
from hipper.store.models import (
    AuthSession,
    CallCenter,
    CallCenterMember,
    Company,
    DirectoryEntry,
    Greeting,
    Group,
    HuntGroup,
    Recording,
    User,
    Voicemail,
)
from hipper.store.users import context_of

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{1,99}$")
MIN_PASSWORD_LENGTH = 8
ROLES = ("user", "admin")
HUNT_POLICIES = ("simultaneous", "circular", "linear")
# User services whose administrator-only values the administrator sets (SPEC F9, I, K).
ADMIN_SERVICES = ("night-forwarding", "call-recording", "fixed-mobile")


class Conflict(DomainError):
    """A value is already taken (username, number, extension); `field` names it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotFound(DomainError):
    def __init__(self, what: str, key: object) -> None:
        super().__init__(f"no {what} '{key}'")
        self.what = what
        self.key = key


# --- value checks -------------------------------------------------------------------------------------------


def public_number(field: str, value: str | None) -> str | None:
    """A number the public network dials (company, department, direct, mobile, call center): E.164 only."""
    if value is None or value == "":
        return None
    try:
        number = normalise(value)
    except NumberError as exc:
        raise InvalidSetting(field, str(exc)) from exc
    if is_extension(number):
        raise InvalidSetting(field, f"'{value}' is an extension; a full phone number is needed here")
    return number


def destination(field: str, value: str | None) -> str | None:
    """Where calls go: an extension or a public number."""
    if value is None or value == "":
        return None
    try:
        return normalise(value)
    except NumberError as exc:
        raise InvalidSetting(field, str(exc)) from exc


def extension_value(field: str, value: str | None) -> str | None:
    if value is None or value == "":
        return None
    cleaned = value.strip()
    if not is_extension(cleaned):
        raise InvalidSetting(field, f"'{value}' is not an extension: 2 to 6 digits, not starting with 0")
    return cleaned


def text(field: str, value: Any, limit: int = 100) -> str:
    """Free text (names): trimmed, at most `limit` characters, no control characters.

    Control characters are refused here because PostgreSQL rejects NUL in text (a 500 otherwise) and they only
    garble phone displays and lists.
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidSetting(field, "text expected")
    cleaned = value.strip()
    if len(cleaned) > limit:
        raise InvalidSetting(field, f"at most {limit} characters")
    if any(not char.isprintable() for char in cleaned):
        raise InvalidSetting(field, "no control characters")
    return cleaned


def _name(field: str, value: Any) -> str:
    cleaned = text(field, value, 200)
    if not cleaned:
        raise InvalidSetting(field, "a name is required")
    return cleaned


def check_password(field: str, password: str) -> None:
    """The rules a user's own new password meets (domain/pin.py), for passwords an administrator sets too."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidSetting(field, f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    try:
        check_user_password(password)
    except InvalidSetting as exc:
        raise InvalidSetting(field, exc.reason) from None


def _licences(names: Iterable[str]) -> list[str]:
    try:
        return sorted(licence_rules.expand(list(names)))
    except licence_rules.UnknownLicence as exc:
        raise InvalidSetting("licences", str(exc)) from exc


def _only(changes: Mapping[str, Any], allowed: Sequence[str]) -> None:
    for key in changes:
        if key not in allowed:
            raise InvalidSetting(key, f"cannot be changed here; allowed: {', '.join(allowed)}")


# --- uniqueness ------------------------------------------------------------------------------------------------

# Every column holding a public number: one number reaches exactly one thing.
_NUMBER_COLUMNS: tuple[tuple[str, Any, Any], ...] = (
    ("company", Company, Company.number),
    ("group", Group, Group.number),
    ("user", User, User.direct_number),
    ("user", User, User.mobile_number),
    ("call center", CallCenter, CallCenter.number),
    ("hunt group", HuntGroup, HuntGroup.number),
)


async def _ensure_number_free(session: AsyncSession, field: str, number: str | None, owner: object = None) -> None:
    if number is None:
        return
    for kind, model, column in _NUMBER_COLUMNS:
        rows = (await session.execute(select(model).where(column == number))).scalars().all()
        for row in rows:
            if row is not owner:
                # Numbers are unique across every company: the owner may be another tenant's, whose names are not
                # this administrator's to learn (issue 11). The kind is enough to find it in one's own company.
                raise Conflict(field, f"{number} is already the number of a {kind}")


async def _ensure_extension_free(
    session: AsyncSession, field: str, company_id: int | None, extension: str | None, owner: object = None
) -> None:
    if extension is None:
        return
    for kind, model in (("user", User), ("call center", CallCenter), ("hunt group", HuntGroup)):
        rows = (
            (await session.execute(select(model).where(model.company_id == company_id, model.extension == extension)))
            .scalars()
            .all()
        )
        for row in rows:
            if row is not owner:
                raise Conflict(field, f"extension {extension} is already used by {kind} '{_label(row)}'")


def _label(row: object) -> str:
    if isinstance(row, User):
        return row.username
    return str(getattr(row, "name", "?"))


# --- companies -----------------------------------------------------------------------------------------------


async def create_company(
    session: AsyncSession,
    name: str,
    number: str | None = None,
    *,
    day_destination: str | None = None,
    night_destination: str | None = None,
) -> Company:
    name = _name("name", name)
    if (await session.execute(select(Company).where(Company.name == name))).scalar_one_or_none() is not None:
        raise Conflict("name", f"a company named '{name}' exists already")
    company_number = public_number("number", number)
    await _ensure_number_free(session, "number", company_number)
    company = Company(
        name=name,
        number=company_number,
        night_mode=False,
        day_destination=destination("day_destination", day_destination),
        night_destination=destination("night_destination", night_destination),
        created_at=datetime.now(UTC),
    )
    session.add(company)
    await session.flush()
    add_event(session, None, "company.created", {"id": company.id, "name": name}, company_id=company.id)
    return company


async def list_companies(session: AsyncSession) -> list[Company]:
    return list((await session.execute(select(Company).order_by(Company.name))).scalars())


async def get_company(session: AsyncSession, company_id: int) -> Company:
    company = await session.get(Company, company_id)
    if company is None:
        raise NotFound("company", company_id)
    return company


async def company_by_name(session: AsyncSession, name: str) -> Company:
    company = (await session.execute(select(Company).where(Company.name == name))).scalar_one_or_none()
    if company is None:
        raise NotFound("company", name)
    return company


async def update_company(session: AsyncSession, company: Company, changes: Mapping[str, Any]) -> Company:
    _only(changes, ("name", "number", "day_destination", "night_destination", "night_mode"))
    if "name" in changes:
        name = _name("name", changes["name"])
        other = (await session.execute(select(Company).where(Company.name == name))).scalar_one_or_none()
        if other is not None and other is not company:
            raise Conflict("name", f"a company named '{name}' exists already")
        company.name = name
    if "number" in changes:
        number = public_number("number", changes["number"])
        await _ensure_number_free(session, "number", number, company)
        company.number = number
    for field in ("day_destination", "night_destination"):
        if field in changes:
            setattr(company, field, destination(field, changes[field]))
    if "night_mode" in changes:
        if not isinstance(changes["night_mode"], bool):
            raise InvalidSetting("night_mode", "true or false")
        company.night_mode = changes["night_mode"]
    await session.flush()
    add_event(session, None, "company.changed", {"id": company.id}, company_id=company.id)
    return company


async def set_night_mode(session: AsyncSession, company: Company, on: bool) -> Company:
    return await update_company(session, company, {"night_mode": on})


# --- groups (departments) ------------------------------------------------------------------------------------


async def create_group(
    session: AsyncSession,
    company: Company,
    name: str,
    number: str | None = None,
    *,
    day_destination: str | None = None,
    night_destination: str | None = None,
) -> Group:
    name = _name("name", name)
    existing = await session.execute(select(Group).where(Group.company_id == company.id, Group.name == name))
    if existing.scalar_one_or_none() is not None:
        raise Conflict("name", f"the company has a group named '{name}' already")
    group_number = public_number("number", number)
    await _ensure_number_free(session, "number", group_number)
    group = Group(
        company_id=company.id,
        name=name,
        number=group_number,
        day_destination=destination("day_destination", day_destination),
        night_destination=destination("night_destination", night_destination),
    )
    session.add(group)
    await session.flush()
    add_event(session, None, "group.created", {"id": group.id}, company_id=company.id)
    return group


async def list_groups(session: AsyncSession, company_id: int) -> list[Group]:
    query = select(Group).where(Group.company_id == company_id).order_by(Group.name)
    return list((await session.execute(query)).scalars())


async def get_group(session: AsyncSession, group_id: int) -> Group:
    group = await session.get(Group, group_id)
    if group is None:
        raise NotFound("group", group_id)
    return group


async def update_group(session: AsyncSession, group: Group, changes: Mapping[str, Any]) -> Group:
    _only(changes, ("name", "number", "day_destination", "night_destination"))
    if "name" in changes:
        name = _name("name", changes["name"])
        other = (
            await session.execute(select(Group).where(Group.company_id == group.company_id, Group.name == name))
        ).scalar_one_or_none()
        if other is not None and other is not group:
            raise Conflict("name", f"the company has a group named '{name}' already")
        group.name = name
    if "number" in changes:
        number = public_number("number", changes["number"])
        await _ensure_number_free(session, "number", number, group)
        group.number = number
    for field in ("day_destination", "night_destination"):
        if field in changes:
            setattr(group, field, destination(field, changes[field]))
    await session.flush()
    add_event(session, None, "group.changed", {"id": group.id}, company_id=group.company_id)
    return group


async def delete_group(session: AsyncSession, group: Group) -> None:
    add_event(session, None, "group.deleted", {"id": group.id}, company_id=group.company_id)
    await session.delete(group)
    await session.flush()


# --- users ---------------------------------------------------------------------------------------------------


async def create_user(
    session: AsyncSession,
    hasher: Hasher,
    *,
    username: str,
    password: str,
    company: Company | None = None,
    group: Group | None = None,
    first_name: str = "",
    last_name: str = "",
    email: str | None = None,
    extension: str | None = None,
    direct_number: str | None = None,
    mobile_number: str | None = None,
    licences: list[str] | None = None,
    role: str = "user",
) -> User:
    username = username.strip()
    if not USERNAME_PATTERN.match(username):
        raise InvalidSetting("username", "2-100 characters: letters, digits, '.', '_', '@' or '-'")
    check_password("password", password)
    if role not in ROLES:
        raise InvalidSetting("role", f"one of {', '.join(ROLES)}")
    if await _user_by_username(session, username) is not None:
        raise Conflict("username", f"the username '{username}' is taken")
    if group is not None and (company is None or group.company_id != company.id):
        raise InvalidSetting("group_id", "the group belongs to another company")
    company_id = company.id if company else None
    user_extension = extension_value("extension", extension)
    await _ensure_extension_free(session, "extension", company_id, user_extension)
    direct = public_number("direct_number", direct_number)
    mobile = public_number("mobile_number", mobile_number)
    if direct is not None and direct == mobile:
        raise Conflict("mobile_number", "the mobile number cannot be the direct number too")
    await _ensure_number_free(session, "direct_number", direct)
    await _ensure_number_free(session, "mobile_number", mobile)
    user = User(
        username=username,
        password_hash=await hasher.hash(password),
        company_id=company_id,
        group_id=group.id if group else None,
        first_name=text("first_name", first_name),
        last_name=text("last_name", last_name),
        email=_email(email),
        extension=user_extension,
        direct_number=direct,
        mobile_number=mobile,
        licences=_licences(licences or []),
        role=role,
        failed_logins=0,
        failed_pins=0,
        created_at=datetime.now(UTC),
    )
    session.add(user)
    await session.flush()
    add_event(session, user.id, "user.created", {"username": username}, company_id=user.company_id)
    return user


def _email(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    # email-validator is a project dependency already (voicemail e-mail); no DNS lookups from admin tools.
    from email_validator import EmailNotValidError, validate_email

    try:
        address = validate_email(value.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidSetting("email", str(exc)) from exc
    if len(address) > 200:
        raise InvalidSetting("email", "at most 200 characters")
    return address


async def _user_by_username(session: AsyncSession, username: str) -> User | None:
    return (await session.execute(select(User).where(User.username == username))).scalar_one_or_none()


async def list_users(session: AsyncSession, company_id: int | None = None) -> list[User]:
    query = select(User).order_by(User.username)
    if company_id is not None:
        query = query.where(User.company_id == company_id)
    return list((await session.execute(query)).scalars())


async def get_user(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("user", user_id)
    return user


async def user_by_username(session: AsyncSession, username: str) -> User:
    user = await _user_by_username(session, username)
    if user is None:
        raise NotFound("user", username)
    return user


USER_FIELDS = (
    "first_name",
    "last_name",
    "email",
    "extension",
    "direct_number",
    "mobile_number",
    "group_id",
    "role",
    "licences",
)


async def update_user(session: AsyncSession, user: User, changes: Mapping[str, Any]) -> User:
    """Change a user's profile fields; numbers are normalised and checked like at creation."""
    _only(changes, USER_FIELDS)
    for field in ("first_name", "last_name"):
        if field in changes:
            setattr(user, field, text(field, changes[field]))
    if "email" in changes:
        user.email = _email(changes["email"])
    if "extension" in changes:
        extension = extension_value("extension", changes["extension"])
        await _ensure_extension_free(session, "extension", user.company_id, extension, user)
        user.extension = extension
    for field in ("direct_number", "mobile_number"):
        if field in changes:
            number = public_number(field, changes[field])
            await _ensure_number_free(session, field, number, user)
            setattr(user, field, number)
    if user.direct_number is not None and user.direct_number == user.mobile_number:
        raise Conflict("mobile_number", "the mobile number cannot be the direct number too")
    if "group_id" in changes:
        group_id = changes["group_id"]
        if group_id is not None:
            group = await session.get(Group, group_id)
            if group is None or group.company_id != user.company_id:
                raise InvalidSetting("group_id", f"no group {group_id} in the user's company")
        user.group_id = group_id
    if "role" in changes:
        if changes["role"] not in ROLES:
            raise InvalidSetting("role", f"one of {', '.join(ROLES)}")
        user.role = changes["role"]
    if "licences" in changes:
        user.licences = _licences(changes["licences"] or [])
    await session.flush()
    add_event(session, user.id, "user.changed", {"fields": sorted(changes)}, company_id=user.company_id)
    return user


async def delete_user(session: AsyncSession, user: User) -> list[str]:
    """Delete the user and everything of theirs (foreign keys cascade). Returns the media paths of their
    voicemails, greetings and recordings, for the caller to unlink after the commit (row first, then file);
    whatever is missed that way, the housekeeping's orphan sweep removes later (store/media_sweep.py)."""
    paths: list[str] = []
    for model in (Voicemail, Greeting, Recording):
        paths += (await session.execute(select(model.media_path).where(model.user_id == user.id))).scalars()
    # Hunt group members are a JSON list (no foreign key): drop the user there by hand.
    hunt_groups = (await session.execute(select(HuntGroup).where(HuntGroup.company_id == user.company_id))).scalars()
    for hunt_group in hunt_groups:
        if user.id in (hunt_group.member_user_ids or []):
            hunt_group.member_user_ids = [m for m in hunt_group.member_user_ids if m != user.id]
    add_event(session, None, "user.deleted", {"id": user.id, "username": user.username}, company_id=user.company_id)
    await session.delete(user)
    await session.flush()
    return paths


async def reset_password(session: AsyncSession, hasher: Hasher, user: User, password: str) -> None:
    """A new password ends every session of the user: whoever knew the old one is logged out."""
    check_password("password", password)
    user.password_hash = await hasher.hash(password)
    user.failed_logins = 0
    user.locked_until = None
    await session.execute(delete(AuthSession).where(AuthSession.user_id == user.id))
    add_event(session, user.id, "user.password_reset", {}, company_id=user.company_id)
    await session.flush()


async def unlock_user(session: AsyncSession, user: User) -> None:
    """Lift the lockouts after too many wrong passwords or PINs."""
    user.failed_logins = 0
    user.locked_until = None
    user.failed_pins = 0
    user.pin_locked_until = None
    add_event(session, user.id, "user.unlocked", {}, company_id=user.company_id)
    await session.flush()


async def add_licences(session: AsyncSession, user: User, names: Iterable[str]) -> User:
    added = set(_licences(names))
    return await update_user(session, user, {"licences": sorted(set(user.licences or []) | added)})


async def remove_licences(session: AsyncSession, user: User, names: Iterable[str]) -> User:
    """Remove licences; a package name removes every licence of the package."""
    removed = set(_licences(names))
    return await update_user(session, user, {"licences": sorted(set(user.licences or []) - removed)})


# --- call centers --------------------------------------------------------------------------------------------

CALL_CENTER_FIELDS = ("name", "number", "extension", "wrap_up_seconds")


def _wrap_up(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 3600:
        raise InvalidSetting("wrap_up_seconds", "a whole number of seconds from 0 to 3600")
    return value


async def create_call_center(
    session: AsyncSession,
    company: Company,
    name: str,
    *,
    number: str | None = None,
    extension: str | None = None,
    wrap_up_seconds: int = 30,
) -> CallCenter:
    call_center = CallCenter(company_id=company.id, name=_name("name", name), wrap_up_seconds=_wrap_up(wrap_up_seconds))
    call_center.number = public_number("number", number)
    await _ensure_number_free(session, "number", call_center.number)
    call_center.extension = extension_value("extension", extension)
    await _ensure_extension_free(session, "extension", company.id, call_center.extension)
    session.add(call_center)
    await session.flush()
    add_event(session, None, "call_center.created", {"id": call_center.id}, company_id=company.id)
    return call_center


async def list_call_centers(session: AsyncSession, company_id: int | None = None) -> list[CallCenter]:
    query = select(CallCenter).order_by(CallCenter.name)
    if company_id is not None:
        query = query.where(CallCenter.company_id == company_id)
    return list((await session.execute(query)).scalars())


async def get_call_center(session: AsyncSession, call_center_id: int) -> CallCenter:
    call_center = await session.get(CallCenter, call_center_id)
    if call_center is None:
        raise NotFound("call center", call_center_id)
    return call_center


async def call_center_by_name(session: AsyncSession, name: str) -> CallCenter:
    found = (await session.execute(select(CallCenter).where(CallCenter.name == name))).scalars().all()
    if not found:
        raise NotFound("call center", name)
    if len(found) > 1:
        raise InvalidSetting("call_center", f"several call centers are named '{name}': use the id")
    return found[0]


async def update_call_center(session: AsyncSession, call_center: CallCenter, changes: Mapping[str, Any]) -> CallCenter:
    _only(changes, CALL_CENTER_FIELDS)
    if "name" in changes:
        call_center.name = _name("name", changes["name"])
    if "number" in changes:
        number = public_number("number", changes["number"])
        await _ensure_number_free(session, "number", number, call_center)
        call_center.number = number
    if "extension" in changes:
        extension = extension_value("extension", changes["extension"])
        await _ensure_extension_free(session, "extension", call_center.company_id, extension, call_center)
        call_center.extension = extension
    if "wrap_up_seconds" in changes:
        call_center.wrap_up_seconds = _wrap_up(changes["wrap_up_seconds"])
    await session.flush()
    await _call_center_changed(session, call_center)
    return call_center


async def delete_call_center(session: AsyncSession, call_center: CallCenter) -> None:
    members = await call_center_members(session, call_center)
    for member in members:
        add_event(session, member.user_id, "call_center.changed", {"id": call_center.id})
    await session.delete(call_center)
    await session.flush()


async def call_center_members(session: AsyncSession, call_center: CallCenter) -> list[CallCenterMember]:
    query = (
        select(CallCenterMember)
        .where(CallCenterMember.call_center_id == call_center.id)
        .order_by(CallCenterMember.user_id)
    )
    return list((await session.execute(query)).scalars())


async def _call_center_changed(session: AsyncSession, call_center: CallCenter) -> None:
    # Members see the call center in their agent screen (SPEC J3): their cached view is stale now.
    for member in await call_center_members(session, call_center):
        add_event(session, member.user_id, "call_center.changed", {"id": call_center.id})


async def _same_company_user(session: AsyncSession, company_id: int, user_id: int, field: str) -> User:
    user = await session.get(User, user_id)
    if user is None or user.company_id != company_id:
        raise InvalidSetting(field, f"no user {user_id} in this company")
    return user


async def add_call_center_member(session: AsyncSession, call_center: CallCenter, user: User) -> CallCenterMember:
    if user.company_id != call_center.company_id:
        raise InvalidSetting("user_id", f"user '{user.username}' belongs to another company")
    if "call-center-agent" not in (user.licences or []):
        raise InvalidSetting("user_id", f"user '{user.username}' has no 'call-center-agent' licence")
    existing = await session.get(CallCenterMember, (call_center.id, user.id))
    if existing is not None:
        raise Conflict("user_id", f"'{user.username}' is a member of '{call_center.name}' already")
    member = CallCenterMember(call_center_id=call_center.id, user_id=user.id, joined=True)
    session.add(member)
    await session.flush()
    add_event(session, user.id, "call_center.changed", {"id": call_center.id})
    return member


async def remove_call_center_member(session: AsyncSession, call_center: CallCenter, user: User) -> None:
    existing = await session.get(CallCenterMember, (call_center.id, user.id))
    if existing is None:
        raise NotFound("member of this call center", user.username)
    await session.delete(existing)
    await session.flush()
    add_event(session, user.id, "call_center.changed", {"id": call_center.id})


# --- hunt groups ---------------------------------------------------------------------------------------------

HUNT_GROUP_FIELDS = ("name", "number", "extension", "policy", "member_user_ids")


def _policy(value: Any) -> str:
    if value not in HUNT_POLICIES:
        raise InvalidSetting("policy", f"one of {', '.join(HUNT_POLICIES)}")
    return str(value)


async def _members(session: AsyncSession, company_id: int, user_ids: Sequence[int]) -> list[int]:
    if len(set(user_ids)) != len(user_ids):
        raise InvalidSetting("member_user_ids", "a user is in the list twice")
    for index, user_id in enumerate(user_ids):
        await _same_company_user(session, company_id, user_id, f"member_user_ids.{index}")
    return list(user_ids)


async def create_hunt_group(
    session: AsyncSession,
    company: Company,
    name: str,
    *,
    number: str | None = None,
    extension: str | None = None,
    policy: str = "simultaneous",
    member_user_ids: Sequence[int] = (),
) -> HuntGroup:
    hunt_group = HuntGroup(company_id=company.id, name=_name("name", name), policy=_policy(policy))
    hunt_group.number = public_number("number", number)
    await _ensure_number_free(session, "number", hunt_group.number)
    hunt_group.extension = extension_value("extension", extension)
    await _ensure_extension_free(session, "extension", company.id, hunt_group.extension)
    hunt_group.member_user_ids = await _members(session, company.id, member_user_ids)
    session.add(hunt_group)
    await session.flush()
    add_event(session, None, "hunt_group.created", {"id": hunt_group.id}, company_id=company.id)
    return hunt_group


async def list_hunt_groups(session: AsyncSession, company_id: int | None = None) -> list[HuntGroup]:
    query = select(HuntGroup).order_by(HuntGroup.name)
    if company_id is not None:
        query = query.where(HuntGroup.company_id == company_id)
    return list((await session.execute(query)).scalars())


async def get_hunt_group(session: AsyncSession, hunt_group_id: int) -> HuntGroup:
    hunt_group = await session.get(HuntGroup, hunt_group_id)
    if hunt_group is None:
        raise NotFound("hunt group", hunt_group_id)
    return hunt_group


async def update_hunt_group(session: AsyncSession, hunt_group: HuntGroup, changes: Mapping[str, Any]) -> HuntGroup:
    _only(changes, HUNT_GROUP_FIELDS)
    if "name" in changes:
        hunt_group.name = _name("name", changes["name"])
    if "number" in changes:
        number = public_number("number", changes["number"])
        await _ensure_number_free(session, "number", number, hunt_group)
        hunt_group.number = number
    if "extension" in changes:
        extension = extension_value("extension", changes["extension"])
        await _ensure_extension_free(session, "extension", hunt_group.company_id, extension, hunt_group)
        hunt_group.extension = extension
    if "policy" in changes:
        hunt_group.policy = _policy(changes["policy"])
    if "member_user_ids" in changes:
        hunt_group.member_user_ids = await _members(session, hunt_group.company_id, changes["member_user_ids"] or [])
    await session.flush()
    add_event(session, None, "hunt_group.changed", {"id": hunt_group.id}, company_id=hunt_group.company_id)
    return hunt_group


async def delete_hunt_group(session: AsyncSession, hunt_group: HuntGroup) -> None:
    add_event(session, None, "hunt_group.deleted", {"id": hunt_group.id}, company_id=hunt_group.company_id)
    await session.delete(hunt_group)
    await session.flush()


# --- enterprise phone list -----------------------------------------------------------------------------------

DIRECTORY_FIELDS = ("first_name", "last_name", "company_name", "number", "email")


def _directory_values(changes: Mapping[str, Any]) -> dict[str, Any]:
    _only(changes, DIRECTORY_FIELDS)
    values: dict[str, Any] = {}
    for field, limit in (("first_name", 100), ("last_name", 100), ("company_name", 200)):
        if field in changes:
            values[field] = text(field, changes[field], limit)
    if "number" in changes:
        values["number"] = destination("number", changes["number"])
        if values["number"] is None:
            raise InvalidSetting("number", "a phone number is required")
    if "email" in changes:
        values["email"] = _email(changes["email"])
    return values


async def create_directory_entry(
    session: AsyncSession, company: Company, values: Mapping[str, Any], *, user: User | None = None
) -> DirectoryEntry:
    """An enterprise phone list entry, or with `user` one of that user's personal contacts."""
    checked = _directory_values(values)
    if "number" not in checked:
        raise InvalidSetting("number", "a phone number is required")
    if not (checked.get("first_name") or checked.get("last_name") or checked.get("company_name")):
        raise InvalidSetting("last_name", "a name or a company name is required")
    entry = DirectoryEntry(company_id=company.id, user_id=user.id if user else None, **checked)
    session.add(entry)
    await session.flush()
    add_event(session, user.id if user else None, "directory.changed", {"id": entry.id}, company_id=company.id)
    return entry


async def list_directory(session: AsyncSession, company_id: int) -> list[DirectoryEntry]:
    query = (
        select(DirectoryEntry)
        .where(DirectoryEntry.company_id == company_id, DirectoryEntry.user_id.is_(None))
        .order_by(DirectoryEntry.last_name, DirectoryEntry.first_name, DirectoryEntry.id)
    )
    return list((await session.execute(query)).scalars())


async def get_directory_entry(session: AsyncSession, entry_id: int) -> DirectoryEntry:
    entry = await session.get(DirectoryEntry, entry_id)
    # Personal contacts belong to their user, never to the administrator's enterprise list.
    if entry is None or entry.user_id is not None:
        raise NotFound("enterprise directory entry", entry_id)
    return entry


async def update_directory_entry(
    session: AsyncSession, entry: DirectoryEntry, changes: Mapping[str, Any]
) -> DirectoryEntry:
    for field, value in _directory_values(changes).items():
        setattr(entry, field, value)
    await session.flush()
    add_event(session, None, "directory.changed", {"id": entry.id}, company_id=entry.company_id)
    return entry


async def delete_directory_entry(session: AsyncSession, entry: DirectoryEntry) -> None:
    add_event(session, None, "directory.changed", {"id": entry.id}, company_id=entry.company_id)
    await session.delete(entry)
    await session.flush()


# --- administrator-only values of user services --------------------------------------------------------------


def admin_service_class(service: str) -> Any:
    """The settings class of an administrator-set service, or NotFound while it is not built yet."""
    from hipper.domain.services import SERVICES

    if service not in ADMIN_SERVICES:
        raise InvalidSetting("service", f"the administrator sets only {', '.join(ADMIN_SERVICES)}")
    settings_class = SERVICES.get(service)
    if settings_class is None:
        raise NotFound("service (not available in this version yet)", service)
    return settings_class


async def read_user_service(session: AsyncSession, user: User, service: str) -> Any:
    settings_class = admin_service_class(service)
    return await service_settings.load(session, user.id, settings_class)


async def change_user_service(session: AsyncSession, user: User, service: str, proposed: Mapping[str, Any]) -> Any:
    """Set a service's values as the administrator: read-only fields included, no step-up needed."""
    from hipper.domain.services import SERVICES, change

    settings_class = admin_service_class(service)
    if not isinstance(proposed, Mapping):
        raise InvalidSetting("body", "expected a JSON object")
    ctx = await context_of(session, user)
    current = await service_settings.load(session, user.id, settings_class)
    related = {}
    for name in getattr(settings_class, "related_services", ()):
        related_class = SERVICES.get(name)
        if related_class is not None and ctx.has(name):
            related[name] = await service_settings.load(session, user.id, related_class)
    # The administrator sends only the values they set; the user's own values stay as they are.
    merged = {**current.model_dump(mode="json", exclude=set(type(current).model_computed_fields)), **proposed}
    # `related` only when there is something to pass: older `change` versions do not take it.
    extra: dict[str, Any] = {"related": related} if related else {}
    try:
        new = change(settings_class, current, merged, ctx, stepped_up=True, by_administrator=True, **extra)
    except NotLicensed as exc:
        raise InvalidSetting("service", f"user '{user.username}' has no licence for '{service}'") from exc
    await service_settings.save(session, user.id, new)
    return new


async def night_forwarding(session: AsyncSession, user: User, *, night_mode: bool, destination: str | None) -> Any:
    return await change_user_service(
        session, user, "night-forwarding", {"night_mode": night_mode, "destination": destination}
    )
