"""One name per concept and what every command's --help shows (issue 25)."""

from __future__ import annotations

import logging

import click
import pytest
from click.testing import CliRunner

from hmtools.cli import main


def _commands(group: click.Group = main, prefix: str = ""):
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", cmd


COMMANDS = list(_commands())


@pytest.mark.parametrize("name,cmd", COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_option_has_help_and_out_has_o(name, cmd):
    for p in cmd.params:
        if isinstance(p, click.Option) and p.name != "help":
            assert p.help, f"hmtools {name} {p.opts[0]}: no help text"
        if isinstance(p, click.Option) and "--out" in p.opts:
            assert "-o" in p.opts, f"hmtools {name}: --out without -o"
        # the frames folder is called --frames-root everywhere (old names stay as aliases)
        if isinstance(p, click.Option) and "--data-root" in p.opts:
            assert p.opts[0] == "--frames-root", name
        if isinstance(p, click.Option) and "--voters" in p.opts:
            assert p.opts[0] == "--exemplars", name
    r = CliRunner().invoke(main, [*name.split(), "--help"])
    assert r.exit_code == 0 and "Example" in r.output, name


def test_known_choices_are_choices():
    cmds = dict(COMMANDS)
    for name, opt in [
        ("pseudo-mask", "--segmenter"),
        ("pseudo-mask", "--tracker"),
        ("propagate", "--segmenter"),
        ("eval", "--checkpoint"),
        ("train", "--layer"),
    ]:
        (p,) = [p for p in cmds[name].params if opt in getattr(p, "opts", [])]
        assert isinstance(p.type, click.Choice), (name, opt)
    r = CliRunner().invoke(main, ["pseudo-mask", ".", "--out", "x.h5", "--tracker", "nope"])
    assert r.exit_code == 2 and "'nope' is not one of" in r.output


def test_label_studio_variables_show_in_help():
    r = CliRunner().invoke(main, ["ls-export", "--help"])
    assert "LABEL_STUDIO_URL" in r.output and "LABEL_STUDIO_API_KEY" in r.output
    assert "visible to every user" in " ".join(r.output.split())


def test_verbose_anywhere_and_only_for_hmtools(tmp_path, caplog):
    from hmtools.masks import LayerData, StoreWriter

    with StoreWriter(tmp_path / "s.h5") as w:
        w.add_video(("a",), height=4, width=4, num_frames=1)
        w.write_layer(("a",), "gtm", LayerData.from_masks([0], [[[1] * 4] * 4], None))
    for args in (["-v", "info", tmp_path / "s.h5"], ["info", tmp_path / "s.h5", "-v"]):
        r = CliRunner().invoke(main, [str(a) for a in args])
        assert r.exit_code == 0, r.output
        assert logging.getLogger("hmtools").getEffectiveLevel() == logging.DEBUG
        assert logging.getLogger("h5py").getEffectiveLevel() >= logging.WARNING
    r = CliRunner().invoke(main, ["info", str(tmp_path / "s.h5")])
    assert logging.getLogger("hmtools").getEffectiveLevel() == logging.INFO


def test_progress_in_a_log_file_is_plain_lines(caplog, monkeypatch):
    from hmtools.progress import LogProgress, progress_bar

    monkeypatch.setenv("HMTOOLS_PROGRESS_SECONDS", "0")
    with caplog.at_level(logging.INFO, logger="hmtools.progress"):
        bar = progress_bar(range(3), desc="pack gtm", unit="video")  # stderr is not a terminal
        assert isinstance(bar, LogProgress)
        assert list(bar) == [0, 1, 2]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("pack gtm: 1/3 videos (33 %)") and "left" in lines[0]
    assert lines[-1].startswith("pack gtm: 3/3 videos (100 %)")
    assert not any("\r" in x for x in lines)
    assert list(progress_bar(range(2), disable=True)) == [0, 1]


def test_a_layer_the_store_does_not_have_names_the_ones_it_has(tmp_path):
    from hmtools.masks import LayerData, StoreWriter

    with StoreWriter(tmp_path / "s.h5") as w:
        w.add_video(("a",), height=4, width=4, num_frames=1)
        w.write_layer(("a",), "gtm", LayerData.from_masks([0], [[[1] * 4] * 4], None))
    for args in (
        ["ls-export", tmp_path / "s.h5", "--frames-root", tmp_path, "--project", "p",
         "--layer", "pmm", "--url", "http://127.0.0.1:9", "--api-key", "x"],
        ["review-queue", tmp_path / "s.h5", "--budget", "5", "--layer", "pmm", "-o", tmp_path / "q.csv"],
        ["unpack", tmp_path / "s.h5", "--layer", "pmm", "-o", tmp_path / "u"],
    ):  # fmt: skip
        r = CliRunner().invoke(main, [str(a) for a in args])
        assert r.exit_code == 1 and "pmm" in r.output and "gtm" in r.output, (args[0], r.output)
