"""The `hipper` command: run the exchange, create demo data, administer (SPEC M1).

The administration commands work directly on the database of the configured data directory (or
`database_url`), through the same `hipper.store.admin` functions as the admin API, so both give the same answers.
Bad input exits non-zero with the reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.config import Settings, load_settings
from hipper.domain.errors import DomainError, InvalidSetting
from hipper.passwords import Hasher
from hipper.store.models import CallCenter, Company, Group, User

T = TypeVar("T")


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.find_root().obj["settings"]
    return settings


def _hasher(settings: Settings) -> Hasher:
    return Hasher(settings.argon2_time_cost, settings.argon2_memory_cost)


def run_in_database(ctx: click.Context, work: Callable[[AsyncSession, Settings], Awaitable[T]]) -> T:
    """Run `work` in one transaction on the configured database (migrated first) and commit it.

    Domain errors become click errors: a message on stderr and exit status 1.
    """
    from hipper.store.db import create_engine, migrate, session_factory

    settings = _settings(ctx)
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def _go() -> T:
        engine = create_engine(settings.resolved_database_url())
        try:
            await migrate(engine)
            async with session_factory(engine)() as session:
                result = await work(session, settings)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    try:
        return asyncio.run(_go())
    except IntegrityError as exc:
        # Another writer (the admin API, a second CLI) took the same value between our check and our commit.
        raise click.ClickException("the change conflicts with data written at the same time; try again") from exc
    except InvalidSetting as exc:
        raise click.ClickException(f"{exc.field.replace('_', '-')}: {exc.reason}") from exc
    except DomainError as exc:
        raise click.ClickException(str(exc)) from exc


async def _company(session: AsyncSession, name: str | None) -> Company:
    """The named company, or the only one when there is just one."""
    from hipper.store import admin

    if name is not None:
        return await admin.company_by_name(session, name)
    companies = await admin.list_companies(session)
    if len(companies) == 1:
        return companies[0]
    if not companies:
        raise InvalidSetting("company", "there is no company yet: create one with `hipper company add`")
    raise InvalidSetting("company", "there are several companies: name one with --company")


def _describe_user(user: User) -> str:
    name = f"{user.first_name} {user.last_name}".strip()
    parts = [user.username]
    if name:
        parts.append(f"({name})")
    if user.extension:
        parts.append(f"ext {user.extension}")
    if user.direct_number:
        parts.append(f"direct {user.direct_number}")
    if user.mobile_number:
        parts.append(f"mobile {user.mobile_number}")
    if user.role == "admin":
        parts.append("[admin]")
    return "  ".join(parts)


@click.group()
@click.option("--config", "config_file", type=click.Path(path_type=Path, exists=True), help="TOML configuration")
@click.option("--data-dir", type=click.Path(path_type=Path), help="data directory (database and media)")
@click.pass_context
def main(ctx: click.Context, config_file: Path | None, data_dir: Path | None) -> None:
    """Hipper: a self-hostable business telephone exchange."""
    overrides = {"data_dir": data_dir} if data_dir else {}
    ctx.ensure_object(dict)
    ctx.obj["settings"] = load_settings(config_file, **overrides)


@main.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Run the exchange: API, app, SIP and media in one process."""
    from hipper.server import run

    run(_settings(ctx))


@main.command()
@click.option("--serve/--no-serve", "then_serve", default=True, help="start the exchange afterwards")
@click.pass_context
def demo(ctx: click.Context, then_serve: bool) -> None:
    """Create a demo company in the data directory (once) and run the exchange."""
    from hipper.demo import DEMO_DEVICE_PASSWORD, DEMO_DEVICES, DEMO_PASSWORD, DEMO_USERS, create_demo

    async def _create(session: AsyncSession, settings: Settings) -> bool:
        return await create_demo(session, _hasher(settings), settings)

    created = run_in_database(ctx, _create)
    settings = _settings(ctx)
    click.echo(("Created" if created else "Found") + f" demo data in {settings.data_dir.resolve()}")
    # Passkeys (WebAuthn) refuse an IP address as relying party: point people at localhost when serving locally.
    host = "localhost" if settings.http_host in ("127.0.0.1", "::1") else settings.http_host
    click.echo(f"Open http://{host}:{settings.http_port}/ and log in with password {DEMO_PASSWORD}:")
    for user in DEMO_USERS:
        click.echo(f"  {user.username:8} {user.description}")
    click.echo(
        f"SIP devices (registrar {settings.sip_host}:{settings.sip_port}, realm {settings.sip_realm}, "
        f"password {DEMO_DEVICE_PASSWORD}):"
    )
    for device in DEMO_DEVICES:
        click.echo(f"  {device.auth_username:12} {device.username:8} {device.kind}")
    if settings.sip_tls_port is not None and (settings.sip_tls_cert_file is None or settings.sip_tls_key_file is None):
        # Demo only (`hipper serve` refuses to start without real files): a self-signed certificate, kept.
        from hipper.sip.certs import demo_certificate

        hosts = [h for h in (settings.sip_advertised_host, settings.sip_host) if h and h not in ("0.0.0.0", "::")]
        cert_file, key_file = demo_certificate(settings.data_dir, [*hosts, "127.0.0.1", "localhost"])
        settings = settings.model_copy(update={"sip_tls_cert_file": cert_file, "sip_tls_key_file": key_file})
        click.echo(
            f"SIP over TLS on port {settings.sip_tls_port} with a self-signed certificate: give phones "
            f"{cert_file.resolve()} as their CA file (or turn their server verification off)."
        )
    if then_serve:
        from hipper.server import run

        run(settings)


# --- companies -----------------------------------------------------------------------------------------------


@main.group()
def company() -> None:
    """Companies (tenants)."""


@company.command("add")
@click.argument("name")
@click.option("--number", help="the company number, e.g. 020 123 0000")
@click.pass_context
def company_add(ctx: click.Context, name: str, number: str | None) -> None:
    """Create a company."""
    from hipper.store import admin

    async def _work(session: AsyncSession, _settings: Settings) -> Company:
        return await admin.create_company(session, name, number)

    created = run_in_database(ctx, _work)
    click.echo(f"Created company '{created.name}' (id {created.id}, number {created.number or '-'})")


@company.command("list")
@click.pass_context
def company_list(ctx: click.Context) -> None:
    """List the companies."""
    from hipper.store import admin

    async def _work(session: AsyncSession, _settings: Settings) -> list[Company]:
        return await admin.list_companies(session)

    companies = run_in_database(ctx, _work)
    if not companies:
        click.echo("No companies yet.")
    for found in companies:
        night = "night mode ON" if found.night_mode else "day"
        click.echo(f"{found.id:4}  {found.name}  {found.number or '-'}  {night}")


# --- groups (departments) ------------------------------------------------------------------------------------


@main.group()
def group() -> None:
    """Groups (departments) of a company."""


@group.command("add")
@click.argument("name")
@click.option("--company", "company_name", help="company name (default: the only company)")
@click.option("--number", "group_number", help="the department number")
@click.pass_context
def group_add(ctx: click.Context, name: str, company_name: str | None, group_number: str | None) -> None:
    """Create a group (department)."""
    from hipper.store import admin

    async def _work(session: AsyncSession, _settings: Settings) -> Group:
        return await admin.create_group(session, await _company(session, company_name), name, group_number)

    created = run_in_database(ctx, _work)
    click.echo(f"Created group '{created.name}' (id {created.id}, number {created.number or '-'})")


@group.command("list")
@click.option("--company", "company_name", help="company name (default: the only company)")
@click.pass_context
def group_list(ctx: click.Context, company_name: str | None) -> None:
    """List the groups of a company."""
    from hipper.store import admin

    async def _work(session: AsyncSession, _settings: Settings) -> list[Group]:
        return await admin.list_groups(session, (await _company(session, company_name)).id)

    groups = run_in_database(ctx, _work)
    if not groups:
        click.echo("No groups.")
    for found in groups:
        click.echo(f"{found.id:4}  {found.name}  {found.number or '-'}")


# --- night mode ----------------------------------------------------------------------------------------------


@main.command()
@click.argument("state", type=click.Choice(["on", "off"]))
@click.option("--company", "company_name", help="company name (default: the only company)")
@click.pass_context
def night(ctx: click.Context, state: str, company_name: str | None) -> None:
    """Switch a company's night mode on or off."""
    from hipper.store import admin

    async def _work(session: AsyncSession, _settings: Settings) -> Company:
        return await admin.set_night_mode(session, await _company(session, company_name), state == "on")

    changed = run_in_database(ctx, _work)
    click.echo(f"Night mode {'on' if changed.night_mode else 'off'} for '{changed.name}'")


# --- administrators and users --------------------------------------------------------------------------------


@main.group("admin")
def admin_group() -> None:
    """Administrators."""


@admin_group.command("create")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help="at least 8 characters")
@click.option("--company", "company_name", help="limit the administrator to this company")
@click.pass_context
def admin_create(ctx: click.Context, username: str, password: str, company_name: str | None) -> None:
    """Create an administrator for the admin API.

    Without --company: the platform's administrator (every company, creates companies). With --company: that
    company's administrator, who sees and changes nothing of other companies.
    """
    from hipper.store import admin

    async def _work(session: AsyncSession, settings: Settings) -> User:
        found = await admin.company_by_name(session, company_name) if company_name else None
        return await admin.create_user(
            session, _hasher(settings), username=username, password=password, company=found, role="admin"
        )

    created = run_in_database(ctx, _work)
    click.echo(f"Created administrator '{created.username}' (id {created.id})")


@main.group()
def user() -> None:
    """Users."""


@user.command("add")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help="at least 8 characters")
@click.option("--company", "company_name", help="company name (default: the only company)")
@click.option("--group", "group_name", help="group (department) name")
@click.option("--first-name", default="")
@click.option("--last-name", default="")
@click.option("--email")
@click.option("--extension", help="short number, unique in the company")
@click.option("--direct", "direct_number", help="direct number")
@click.option("--mobile", "mobile_number", help="mobile number")
@click.option("--licence", "licences", multiple=True, help="licence or package (basic, agent, full); repeatable")
@click.pass_context
def user_add(
    ctx: click.Context,
    username: str,
    password: str,
    company_name: str | None,
    group_name: str | None,
    first_name: str,
    last_name: str,
    email: str | None,
    extension: str | None,
    direct_number: str | None,
    mobile_number: str | None,
    licences: tuple[str, ...],
) -> None:
    """Create a user."""
    from hipper.store import admin

    async def _work(session: AsyncSession, settings: Settings) -> User:
        found = await _company(session, company_name)
        group = None
        if group_name is not None:
            matches = [g for g in await admin.list_groups(session, found.id) if g.name == group_name]
            if not matches:
                raise InvalidSetting("group", f"'{found.name}' has no group '{group_name}'")
            group = matches[0]
        return await admin.create_user(
            session,
            _hasher(settings),
            username=username,
            password=password,
            company=found,
            group=group,
            first_name=first_name,
            last_name=last_name,
            email=email,
            extension=extension,
            direct_number=direct_number,
            mobile_number=mobile_number,
            licences=list(licences),
        )

    created = run_in_database(ctx, _work)
    click.echo(f"Created user {_describe_user(created)}")


@user.command("list")
@click.option("--company", "company_name", help="only this company")
@click.pass_context
def user_list(ctx: click.Context, company_name: str | None) -> None:
    """List users."""
    from hipper.store import admin

    async def _work(session: AsyncSession, _settings: Settings) -> list[User]:
        company_id = (await admin.company_by_name(session, company_name)).id if company_name else None
        return await admin.list_users(session, company_id)

    users = run_in_database(ctx, _work)
    if not users:
        click.echo("No users yet.")
    for found in users:
        click.echo(_describe_user(found))


@user.command("show")
@click.argument("username")
@click.pass_context
def user_show(ctx: click.Context, username: str) -> None:
    """Show a user: numbers, licences, devices, lockouts."""
    from hipper.store import admin, devices
    from hipper.store.users import numbers_of

    async def _work(session: AsyncSession, _settings: Settings) -> list[str]:
        found = await admin.user_by_username(session, username)
        lines = [
            f"username:   {found.username} (id {found.id}, role {found.role})",
            f"name:       {found.first_name} {found.last_name}".rstrip(),
            f"email:      {found.email or '-'}",
            f"extension:  {found.extension or '-'}",
            f"direct:     {found.direct_number or '-'}",
            f"mobile:     {found.mobile_number or '-'}",
            f"numbers:    {', '.join(f'{kind} {n}' for kind, n in (await numbers_of(session, found)).items()) or '-'}",
            f"licences:   {', '.join(found.licences or []) or '-'}",
            f"PIN set:    {'yes' if found.pin_hash else 'no'}",
        ]
        if found.locked_until is not None or found.pin_locked_until is not None:
            lines.append("locked:     yes (hipper user unlock)")
        for device in await devices.list_devices(session, found.id):
            lines.append(f"device:     {device.auth_username} ({device.kind}, {device.name})")
        return lines

    for line in run_in_database(ctx, _work):
        click.echo(line)


@user.command("passwd")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help="at least 8 characters")
@click.pass_context
def user_passwd(ctx: click.Context, username: str, password: str) -> None:
    """Set a user's password (their sessions end)."""
    from hipper.store import admin

    async def _work(session: AsyncSession, settings: Settings) -> None:
        await admin.reset_password(
            session, _hasher(settings), await admin.user_by_username(session, username), password
        )

    run_in_database(ctx, _work)
    click.echo(f"Password of '{username}' changed; their sessions have ended")


@user.command("unlock")
@click.argument("username")
@click.pass_context
def user_unlock(ctx: click.Context, username: str) -> None:
    """Lift the lockout after too many wrong passwords or PINs."""
    from hipper.store import admin

    async def _work(session: AsyncSession, _settings: Settings) -> None:
        await admin.unlock_user(session, await admin.user_by_username(session, username))

    run_in_database(ctx, _work)
    click.echo(f"Unlocked '{username}'")


@user.command("licences")
@click.argument("username")
@click.option("--add", "to_add", multiple=True, help="licence or package to add; repeatable")
@click.option("--remove", "to_remove", multiple=True, help="licence or package to remove; repeatable")
@click.option("--set", "to_set", multiple=True, help="replace all licences by these; repeatable")
@click.pass_context
def user_licences(
    ctx: click.Context, username: str, to_add: tuple[str, ...], to_remove: tuple[str, ...], to_set: tuple[str, ...]
) -> None:
    """Show or change a user's licences."""
    from hipper.store import admin

    if to_set and (to_add or to_remove):
        raise click.UsageError("use --set alone, or --add/--remove")

    async def _work(session: AsyncSession, _settings: Settings) -> list[str]:
        found = await admin.user_by_username(session, username)
        if to_set:
            await admin.update_user(session, found, {"licences": list(to_set)})
        if to_add:
            await admin.add_licences(session, found, to_add)
        if to_remove:
            await admin.remove_licences(session, found, to_remove)
        return list(found.licences or [])

    held = run_in_database(ctx, _work)
    click.echo(f"Licences of '{username}': {', '.join(held) or '(none)'}")


@user.command("delete")
@click.argument("username")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@click.pass_context
def user_delete(ctx: click.Context, username: str, yes: bool) -> None:
    """Delete a user with their settings, devices, voicemails and call logs."""
    from hipper.store import admin, media_files

    if not yes:
        click.confirm(f"Delete '{username}' and all their data?", abort=True)

    async def _work(session: AsyncSession, _settings: Settings) -> list[str]:
        return await admin.delete_user(session, await admin.user_by_username(session, username))

    paths = run_in_database(ctx, _work)
    # After the commit: the rows are gone, now their voicemails, greetings and recordings.
    asyncio.run(media_files.remove(_settings(ctx).data_dir, paths))
    click.echo(f"Deleted '{username}'")


# --- numbers -------------------------------------------------------------------------------------------------


@main.group()
def number() -> None:
    """A user's direct and mobile numbers."""


@number.command("set")
@click.argument("username")
@click.option("--direct", "direct_number", help="direct number ('' or 'none' clears it)")
@click.option("--mobile", "mobile_number", help="mobile number ('' or 'none' clears it)")
@click.pass_context
def number_set(ctx: click.Context, username: str, direct_number: str | None, mobile_number: str | None) -> None:
    """Set a user's direct and/or mobile number."""
    from hipper.store import admin

    changes: dict[str, str | None] = {}
    for field, value in (("direct_number", direct_number), ("mobile_number", mobile_number)):
        if value is not None:
            changes[field] = None if value.strip().lower() in ("", "none") else value
    if not changes:
        raise click.UsageError("give --direct and/or --mobile")

    async def _work(session: AsyncSession, _settings: Settings) -> User:
        return await admin.update_user(session, await admin.user_by_username(session, username), changes)

    changed = run_in_database(ctx, _work)
    click.echo(f"Numbers of '{username}': direct {changed.direct_number or '-'}, mobile {changed.mobile_number or '-'}")


# --- SIP devices ---------------------------------------------------------------------------------------------


@main.group()
def device() -> None:
    """SIP devices (desk phones, softphones)."""


@device.command("add")
@click.argument("username")
@click.argument("auth_username")
@click.option("--password", help="SIP password (default: a generated one, printed once)")
@click.option("--kind", type=click.Choice(["desk", "softphone"]), default="desk")
@click.option("--name", default="")
@click.pass_context
def device_add(
    ctx: click.Context, username: str, auth_username: str, password: str | None, kind: str, name: str
) -> None:
    """Add a SIP device for USERNAME that registers as AUTH_USERNAME."""
    from hipper.store import admin, devices

    secret = password or devices.generate_password()

    async def _work(session: AsyncSession, settings: Settings) -> str:
        found = await admin.user_by_username(session, username)
        created = await devices.create_device(
            session,
            found,
            auth_username=auth_username,
            password=secret,
            realm=settings.sip_realm,
            kind=kind,
            name=name,
        )
        return created.realm

    realm = run_in_database(ctx, _work)
    click.echo(f"Created SIP device '{auth_username}' for '{username}' (realm {realm})")
    click.echo(f"SIP password: {secret}   (shown once; only its digest hashes are stored)")


@device.command("passwd")
@click.argument("auth_username")
@click.option("--password", help="new SIP password (default: a generated one, printed once)")
@click.pass_context
def device_passwd(ctx: click.Context, auth_username: str, password: str | None) -> None:
    """Set a new SIP password for a device."""
    from hipper.store import devices

    secret = password or devices.generate_password()

    async def _work(session: AsyncSession, settings: Settings) -> None:
        found = await devices.device_by_auth_username(session, auth_username)
        await devices.reset_password(session, found, secret, settings.sip_realm)

    run_in_database(ctx, _work)
    click.echo(f"New SIP password for '{auth_username}': {secret}   (shown once)")


@device.command("list")
@click.argument("username", required=False)
@click.pass_context
def device_list(ctx: click.Context, username: str | None) -> None:
    """List SIP devices (of one user, or all)."""
    from hipper.store import admin, devices

    async def _work(session: AsyncSession, _settings: Settings) -> list[str]:
        user_id = (await admin.user_by_username(session, username)).id if username else None
        owners = {u.id: u.username for u in await admin.list_users(session)}
        return [
            f"{d.auth_username:16} {owners.get(d.user_id, '?'):12} {d.kind:10} {d.name}"
            for d in await devices.list_devices(session, user_id)
        ]

    lines = run_in_database(ctx, _work)
    if not lines:
        click.echo("No SIP devices.")
    for line in lines:
        click.echo(line)


@device.command("delete")
@click.argument("auth_username")
@click.pass_context
def device_delete(ctx: click.Context, auth_username: str) -> None:
    """Delete a SIP device."""
    from hipper.store import devices

    async def _work(session: AsyncSession, _settings: Settings) -> None:
        await devices.delete_device(session, await devices.device_by_auth_username(session, auth_username))

    run_in_database(ctx, _work)
    click.echo(f"Deleted SIP device '{auth_username}'")


# --- call centers --------------------------------------------------------------------------------------------


@main.group()
def callcenter() -> None:
    """Call centers (queues) and their agents."""


@callcenter.command("add")
@click.argument("name")
@click.option("--company", "company_name", help="company name (default: the only company)")
@click.option("--number", "cc_number", help="the call center number")
@click.option("--extension")
@click.option("--wrap-up", "wrap_up_seconds", type=int, default=30, show_default=True, help="wrap-up seconds")
@click.pass_context
def callcenter_add(
    ctx: click.Context,
    name: str,
    company_name: str | None,
    cc_number: str | None,
    extension: str | None,
    wrap_up_seconds: int,
) -> None:
    """Create a call center."""
    from hipper.store import admin

    async def _work(session: AsyncSession, _settings: Settings) -> CallCenter:
        return await admin.create_call_center(
            session,
            await _company(session, company_name),
            name,
            number=cc_number,
            extension=extension,
            wrap_up_seconds=wrap_up_seconds,
        )

    created = run_in_database(ctx, _work)
    click.echo(f"Created call center '{created.name}' (id {created.id}, number {created.number or '-'})")


@callcenter.command("list")
@click.option("--company", "company_name", help="only this company")
@click.pass_context
def callcenter_list(ctx: click.Context, company_name: str | None) -> None:
    """List call centers with their agents."""
    from hipper.store import admin

    async def _work(session: AsyncSession, _settings: Settings) -> list[str]:
        company_id = (await admin.company_by_name(session, company_name)).id if company_name else None
        names = {u.id: u.username for u in await admin.list_users(session)}
        lines = []
        for found in await admin.list_call_centers(session, company_id):
            members = [names.get(m.user_id, "?") for m in await admin.call_center_members(session, found)]
            lines.append(
                f"{found.id:4}  {found.name}  {found.number or '-'}  ext {found.extension or '-'}  "
                f"wrap-up {found.wrap_up_seconds}s  agents: {', '.join(members) or '-'}"
            )
        return lines

    lines = run_in_database(ctx, _work)
    if not lines:
        click.echo("No call centers.")
    for line in lines:
        click.echo(line)


@callcenter.group("member")
def callcenter_member() -> None:
    """Agents of a call center."""


@callcenter_member.command("add")
@click.argument("call_center")
@click.argument("username")
@click.pass_context
def callcenter_member_add(ctx: click.Context, call_center: str, username: str) -> None:
    """Make USERNAME an agent of CALL_CENTER (name or id)."""
    from hipper.store import admin

    async def _work(session: AsyncSession, _settings: Settings) -> None:
        found = await _call_center(session, call_center)
        await admin.add_call_center_member(session, found, await admin.user_by_username(session, username))

    run_in_database(ctx, _work)
    click.echo(f"'{username}' is now an agent of '{call_center}'")


@callcenter_member.command("remove")
@click.argument("call_center")
@click.argument("username")
@click.pass_context
def callcenter_member_remove(ctx: click.Context, call_center: str, username: str) -> None:
    """Remove USERNAME from CALL_CENTER (name or id)."""
    from hipper.store import admin

    async def _work(session: AsyncSession, _settings: Settings) -> None:
        found = await _call_center(session, call_center)
        await admin.remove_call_center_member(session, found, await admin.user_by_username(session, username))

    run_in_database(ctx, _work)
    click.echo(f"'{username}' is no longer an agent of '{call_center}'")


async def _call_center(session: AsyncSession, name_or_id: str) -> CallCenter:
    from hipper.store import admin

    if name_or_id.isdigit():
        # Beyond the database's integer range nothing can match (and the driver would fail on it).
        if int(name_or_id) > 2_147_483_647:
            raise admin.NotFound("call center", name_or_id)
        return await admin.get_call_center(session, int(name_or_id))
    return await admin.call_center_by_name(session, name_or_id)


# --- housekeeping ----------------------------------------------------------------------------------------------


@main.group()
def events() -> None:
    """The outbox of events (live events, notifications, caches)."""


@events.command("purge")
@click.option(
    "--older-than-days",
    type=click.FloatRange(min=0, min_open=True),
    help="delete events older than this (default: the events_retention_days setting)",
)
@click.pass_context
def events_purge(ctx: click.Context, older_than_days: float | None) -> None:
    """Delete old events now, as `hipper serve` does every housekeeping_interval_seconds."""
    from datetime import timedelta

    from hipper.store.events import PurgeResult, purge

    async def _work(session: AsyncSession, settings: Settings) -> PurgeResult:
        days = older_than_days if older_than_days is not None else settings.events_retention_days
        return await purge(session, timedelta(days=days))

    result = run_in_database(ctx, _work)
    click.echo(f"Deleted {result.deleted} events; every event up to id {result.purged_through} is gone")
    if result.held_back_by is not None:
        click.echo(
            f"Older events remain: the reader '{result.held_back_by}' has not read them yet "
            "(is the exchange with notifications running?)"
        )


@main.group()
def media() -> None:
    """The media files in the data directory (voicemails, greetings, recordings)."""


@media.command("sweep")
@click.option(
    "--older-than-hours",
    type=click.FloatRange(min=0),
    default=None,
    help="only files at least this old (a row is committed right after its file is written)  "
    "[default: the grace period hipper serve uses, 1 hour]",
)
@click.pass_context
def media_sweep(ctx: click.Context, older_than_hours: float | None) -> None:
    """Remove media files that no row names (left by a crash, a failed commit or a deleted user), as
    `hipper serve` does every housekeeping_interval_seconds."""
    from datetime import timedelta

    from hipper.store.media_sweep import GRACE, sweep_orphans

    older_than = GRACE if older_than_hours is None else timedelta(hours=older_than_hours)

    async def _work(session: AsyncSession, settings: Settings) -> list[str]:
        return await sweep_orphans(session, settings.data_dir, older_than)

    removed = run_in_database(ctx, _work)
    for path in removed:
        click.echo(f"removed {path}")
    click.echo(f"Removed {len(removed)} media files that no row names")


# --- outbound policies (call barring, concurrent-call limits) ---------------------------------------------------


@main.group()
def barring() -> None:
    """Outbound call barring and concurrent-call limits of a company or a user (docs/security.md "Toll fraud")."""


def _policy_target(company_name: str | None, username: str | None) -> None:
    if (company_name is None) == (username is None):
        raise click.UsageError("name either --company or --user")


def _describe_policy(barred: list[str], prefixes: list[str], max_calls: int | None) -> str:
    limit = "default" if max_calls is None else str(max_calls)
    return f"barred: {', '.join(barred) or '(none)'}  prefixes: {', '.join(prefixes) or '(none)'}  max calls: {limit}"


@barring.command("show")
@click.option("--company", "company_name", help="company name")
@click.option("--user", "username", help="username")
@click.pass_context
def barring_show(ctx: click.Context, company_name: str | None, username: str | None) -> None:
    """Show a company's or a user's outbound policy (a company without one: the exchange's defaults)."""
    from hipper.store import admin, outbound

    _policy_target(company_name, username)

    async def _work(session: AsyncSession, settings: Settings) -> str:
        if username is not None:
            user = await admin.user_by_username(session, username)
            row = await outbound.policy_row(session, user_id=user.id)
            default: list[str] = []
        else:
            company = await _company(session, company_name)
            row = await outbound.policy_row(session, company_id=company.id)
            default = list(settings.outbound_barred_default)
        if row is None:
            return _describe_policy(sorted(default), [], None) + "  (not set: defaults)"
        return _describe_policy(list(row.barred), list(row.barred_prefixes), row.max_calls)

    click.echo(run_in_database(ctx, _work))


@barring.command("set")
@click.option("--company", "company_name", help="company name")
@click.option("--user", "username", help="username")
@click.option("--bar", "classes", multiple=True, help="premium, international or high_cost; repeatable")
@click.option("--prefix", "prefixes", multiple=True, help="a barred E.164 prefix such as +3190; repeatable")
@click.option("--max-calls", type=click.IntRange(min=0), default=None, help="concurrent outbound calls")
@click.pass_context
def barring_set(
    ctx: click.Context,
    company_name: str | None,
    username: str | None,
    classes: tuple[str, ...],
    prefixes: tuple[str, ...],
    max_calls: int | None,
) -> None:
    """Replace a company's or a user's outbound policy (what is not given is cleared; no --max-calls: the
    exchange's default limit)."""
    from hipper.store import admin, outbound

    _policy_target(company_name, username)

    async def _work(session: AsyncSession, _settings: Settings) -> str:
        if username is not None:
            target = {"user_id": (await admin.user_by_username(session, username)).id}
        else:
            target = {"company_id": (await _company(session, company_name)).id}
        row = await outbound.set_policy(
            session, **target, barred=list(classes), prefixes=list(prefixes), max_calls=max_calls
        )
        return _describe_policy(list(row.barred), list(row.barred_prefixes), row.max_calls)

    click.echo(run_in_database(ctx, _work))
