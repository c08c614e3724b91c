"""The ``hmtools`` command line: click commands that parse options and call the library."""

from __future__ import annotations

import logging
import sys

import click

from hmtools import __version__
from hmtools.errors import HMError


class _Group(click.Group):
    """Prints :class:`HMError` messages (which name the file/video/frame) without a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except HMError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted: nothing half-written was kept", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hmtools")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """hmtools: human-centric action quality assessment on -HM mask datasets.

    \b
    Example:
      hmtools pack masks/ --out FineDiving-HM.h5 --layer gtm
      hmtools info FineDiving-HM.h5
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _register() -> None:
    from hmtools.cli import annotation as _annotation  # noqa: F401  (commands attach to ``main``)
    from hmtools.cli import datasets as _datasets  # noqa: F401
    from hmtools.cli import engine as _engine  # noqa: F401
    from hmtools.cli import models as _models  # noqa: F401
    from hmtools.cli import store as _store  # noqa: F401


_register()
