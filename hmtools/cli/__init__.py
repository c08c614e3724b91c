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


#: The extra that installs a module the core does not have (``pip install 'hmtools[<extra>]'``).
EXTRA_OF_MODULE = {
    "segment_anything": "sam",
    "sam2": "sam2",
    "hydra": "sam2",
    "omegaconf": "sam2",
    "iopath": "sam2",
    "label_studio_sdk": "labelstudio",
    "ai_edge_litert": "pose",
}
# torch and torchvision: SAM's extra for the commands that segment, the trainer's for the rest
_SEGMENTING = {"pseudo-mask", "propagate", "ls-import"}


def missing_extra_message(module: str, command: str | None) -> str | None:
    """What to install when ``module`` is missing for ``command`` (None: not an extra's)."""
    top = module.split(".")[0]
    if top in ("torch", "torchvision"):
        extras = ["sam", "sam2"] if command in _SEGMENTING else ["train"]
    elif top in EXTRA_OF_MODULE:
        extras = [EXTRA_OF_MODULE[top]]
    else:
        return None
    what = f"hmtools {command}" if command else "this command"
    install = " or ".join(f"pip install 'hmtools[{x}]'" for x in extras)
    return (
        f"{what} needs {top}, which is not installed: {install} (or 'hmtools[all]'; the "
        "tested versions: add -c constraints.txt)"
    )


class _Group(click.Group):
    """Prints :class:`HMError` messages (which name the file/video/frame) without a traceback,
    and for a module of a missing extra, which extra to install."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """``-v``/``--verbose`` is accepted anywhere on the command line (before ``--``)."""
        cut = args.index("--") if "--" in args else len(args)
        flags = {"-v", "--verbose"}
        ctx.meta["hmtools_verbose"] = any(a in flags for a in args[:cut])
        args = [a for a in args[:cut] if a not in flags] + args[cut:]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except HMError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(EXIT_ERROR)
        except ModuleNotFoundError as e:
            msg = missing_extra_message(e.name or "", ctx.invoked_subcommand)
            if msg is None:
                raise
            click.echo(f"error: {msg}", err=True)
            sys.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo("interrupted: nothing half-written was kept", err=True)
            sys.exit(EXIT_INTERRUPTED)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hmtools")
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Log hmtools' debug messages (anywhere on the line: hmtools stats -v ...).",
)
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """hmtools: human-centric action quality assessment on -HM mask datasets.

    \b
    Example:
      hmtools pack masks/ --out FineDiving-HM.h5 --layer gtm
      hmtools info FineDiving-HM.h5
    """
    verbose = verbose or bool(ctx.meta.get("hmtools_verbose"))
    # hmtools' own loggers at INFO (DEBUG with -v); other libraries' (h5py, PIL, ...) warnings only
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("hmtools").setLevel(logging.DEBUG if verbose else logging.INFO)


def _register() -> None:
    from hmtools.cli import annotation as _annotation  # noqa: F401  (commands attach to ``main``)
    from hmtools.cli import datasets as _datasets  # noqa: F401
    from hmtools.cli import engine as _engine  # noqa: F401
    from hmtools.cli import models as _models  # noqa: F401
    from hmtools.cli import review as _review  # noqa: F401
    from hmtools.cli import store as _store  # noqa: F401


_register()
