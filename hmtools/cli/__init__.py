"""The ``hmtools`` command line: click commands that parse options and call the library."""

from __future__ import annotations

import logging
import sys

import click

from hmtools import __version__
from hmtools.errors import HMError

#: Exit codes of every command: 0 done; 1 an error (the message names the file, video, frame);
#: 2 a usage error (click's: unknown option, bad value); 3 partly done: a long job (pseudo-mask)
#: finished, but some videos failed and are listed in its failures file; 130 interrupted.
EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED = 1, 2, 3, 130


class _Group(click.Group):
    """Prints :class:`HMError` messages (which name the file/video/frame) without a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except HMError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo("interrupted: nothing half-written was kept", err=True)
            sys.exit(EXIT_INTERRUPTED)


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
    from hmtools.cli import review as _review  # noqa: F401
    from hmtools.cli import store as _store  # noqa: F401


_register()
