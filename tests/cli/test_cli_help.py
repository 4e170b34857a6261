"""`streamtap --help` and every command's: each option says what it does, the top-level
description names every command, and README's list of the addon options is the real one."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("positional arguments:", "options:")


def help_of(*command: str) -> str:
    result = subprocess.run([str(BIN / "streamtap"), *command, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def items_without_help(text: str) -> list[str]:
    """The argument lines of argparse's help that carry no help text: an item line (indented
    2, or 4 for a command under its group) with neither text after its invocation nor a
    continuation line indented deeper."""
    lines = text.splitlines()
    missing, in_section = [], False
    for i, line in enumerate(lines):
        if not line.startswith(" "):
            in_section = line in SECTIONS
            continue
        indent = len(line) - len(line.lstrip())
        if not in_section or indent not in (2, 4):
            continue
        following = lines[i + 1] if i + 1 < len(lines) else ""
        inline = re.match(r"\s+\S.*?\s{2,}\S", line)
        continued = following.startswith(" " * (indent + 2)) and following.strip()
        if not inline and not continued:
            missing.append(line.strip())
    return missing


def commands(top: str) -> list[str]:
    return re.search(r"\{([a-z,]+)\}", top).group(1).split(",")


def test_the_checker_sees_a_missing_help():
    text = "usage: x\n\noptions:\n  -h, --help   show this\n  --config FILE\n  --since SINCE\n               the offset\n"
    assert items_without_help(text) == ["--config FILE"]


def test_the_top_level_description_names_every_command():
    top = help_of()
    names = commands(top)
    assert {"run", "ca", "env", "pac", "replay", "tail"} <= set(names)
    description = top.split("\n\n", 1)[1].split("positional arguments:", 1)[0]
    assert [n for n in names if not re.search(rf"\b{n}\b", description)] == []
    assert items_without_help(top) == []


@pytest.mark.parametrize("command", ["run", "ca", "env", "pac", "tail", "replay"])
def test_every_option_has_help(command):
    assert items_without_help(help_of(command)) == []


def test_ca_help_explains_each_action_even_after_the_action():
    text = help_of("ca", "rotate")  # argparse prints the `ca` parser's help: it must say it all
    assert text == help_of("ca")
    description = text.split("positional arguments:", 1)[0]
    for action in ("show", "path", "install", "uninstall", "export", "rotate"):
        assert re.search(rf"^  {action}\b\s+\S", description, re.M), action
    rotate = description[description.index("  rotate"):]
    assert "--yes" in rotate and "backup-" in rotate


def test_readme_lists_exactly_the_addon_options():
    from mitmproxy.test import taddons

    from proxy_core.mitm import default_addons

    # The options the addons declare, as mitmdump -s addons/stream_capture.py has them
    # (whose --options listing leaves script options out in some mitmproxy releases).
    with taddons.context(*default_addons()) as tctx:
        real = {name.removeprefix("streamtap_") for name in tctx.options.keys() if name.startswith("streamtap_")}
    assert {"routes", "capture_flush_ms", "decode_window"} <= real
    readme = (ROOT / "README.md").read_text()
    paragraph = readme[readme.index("Their options all start with `streamtap_`"):]
    paragraph = paragraph[: paragraph.index("\n\n")]
    listed = re.search(r"\((.*?)\)", paragraph, re.S).group(1)
    assert {name.strip() for name in listed.split(",")} == real
