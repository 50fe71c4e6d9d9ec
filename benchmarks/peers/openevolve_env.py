"""OpenEvolve 0.4.0 in its own virtual environment: never a dependency of Daedalus."""

from __future__ import annotations

import subprocess
import sys

from benchmarks.peers.tools import OE_VENV

VERSION = "0.4.0"


def installed_version() -> str | None:
    python = OE_VENV / "bin" / "python"
    if not python.exists():
        return None
    out = subprocess.run([str(python), "-c", "import importlib.metadata as m; "
                          "print(m.version('openevolve'))"], capture_output=True, text=True)
    return out.stdout.strip() or None if out.returncode == 0 else None


def ensure() -> str:
    """Create the venv and install openevolve==0.4.0 from the package index, once."""
    if installed_version() == VERSION:
        return VERSION
    print(f"setting up OpenEvolve {VERSION} in {OE_VENV} (one time)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(OE_VENV)], check=True)
    subprocess.run([str(OE_VENV / "bin" / "pip"), "install", "-q", f"openevolve=={VERSION}"],
                   check=True)
    found = installed_version()
    if found != VERSION:
        raise SystemExit(f"openevolve {VERSION} did not install (found {found}); see pip's output")
    return VERSION
