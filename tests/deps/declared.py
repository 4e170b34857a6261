"""Write setup.cfg's dependencies as requirement files, for deptry (which does not read
setup.cfg): runtime.txt (install_requires), dev.txt (every extra), and for the run over
tests/, where everything counts as declared, all.txt and an empty none.txt.

    python -m tests.deps.declared OUT_DIR
"""

from __future__ import annotations

import configparser
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def requirements(value: str) -> list[str]:
    # A dangling list, one requirement a line; comment lines are gone already.
    return [line.strip() for line in value.splitlines() if line.strip()]


def main(out_dir: str) -> None:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "setup.cfg")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runtime = requirements(cfg["options"]["install_requires"])
    extras = [req for value in cfg["options.extras_require"].values() for req in requirements(value)]
    (out / "runtime.txt").write_text("\n".join(runtime) + "\n")
    (out / "dev.txt").write_text("\n".join(extras) + "\n")
    (out / "all.txt").write_text("\n".join(runtime + extras) + "\n")
    (out / "none.txt").write_text("")


if __name__ == "__main__":
    main(sys.argv[1])
