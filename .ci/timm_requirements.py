"""Print the requirements of CI's timm environment, one a line, for ``pip install -r``.

timm imports torchvision, and torchvision imports only beside the torch it was built with.
The project's own torch pin (``<=2.13.0``) resolves to the CPU wheel on these machines, for
which no torchvision is at hand; the pair below is, in the machine's local wheels. So this
environment takes cachekit's dependencies and its ``timm`` and ``tests`` extras from
pyproject.toml, with torch swapped for that pair, and installs cachekit itself with
``--no-deps`` (its torch pin would otherwise undo the swap).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

EXTRAS = ("timm", "tests")
TORCH = (
    "torch==2.14.1",
    "torchvision==0.29.1",
    # torch's CUDA libraries come from the local wheels; PyPI has a newer nvJitLink than the
    # local copy, which pip would otherwise download
    "nvidia-nvjitlink==13.4.92",
)


def requirement_name(requirement: str) -> str:
    """``"torch"`` for ``"torch>=2.4,<=2.13.0"``."""
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def requirements(pyproject: Path) -> list[str]:
    """cachekit's dependencies and :data:`EXTRAS` but torch, then :data:`TORCH`."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    listed = [*project["dependencies"], *(item for extra in EXTRAS for item in project["optional-dependencies"][extra])]
    return [item for item in listed if requirement_name(item) != "torch"] + list(TORCH)


if __name__ == "__main__":
    print("\n".join(requirements(Path(__file__).resolve().parents[1] / "pyproject.toml")))
