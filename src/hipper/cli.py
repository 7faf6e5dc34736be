"""The `hipper` command: run the exchange, create demo data, administer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from hipper.config import Settings, load_settings


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj["settings"]
    return settings


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
    from hipper.demo import DEMO_PASSWORD, DEMO_USERS, create_demo
    from hipper.passwords import Hasher
    from hipper.store.db import create_engine, migrate, session_factory

    settings = _settings(ctx)
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def _create() -> bool:
        engine = create_engine(settings.resolved_database_url())
        try:
            await migrate(engine)
            async with session_factory(engine)() as session:
                return await create_demo(session, Hasher(settings.argon2_time_cost, settings.argon2_memory_cost))
        finally:
            await engine.dispose()

    created = asyncio.run(_create())
    click.echo(("Created" if created else "Found") + f" demo data in {settings.data_dir.resolve()}")
    click.echo(f"Open http://{settings.http_host}:{settings.http_port}/ and log in with password {DEMO_PASSWORD}:")
    for user in DEMO_USERS:
        click.echo(f"  {user.username:8} {user.description}")
    if then_serve:
        from hipper.server import run

        run(settings)
