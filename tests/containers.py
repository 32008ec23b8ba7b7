"""Builds the project image with the repository's own script and runs containers of it.

Rootful podman on these machines needs the runc runtime (crun cannot set up
cgroups in their hybrid mode) and explicit rlimits (the defaults fail with
EPERM); both can be overridden through CONTAINER_RUNTIME / CONTAINER_ULIMITS.
"""
import os
import shutil
import subprocess
from typing import List, Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_TAG = os.environ.get("RAIN_TOMORROW_TEST_IMAGE", "rain-tomorrow:dev")
RUNTIME = os.environ.get("CONTAINER_RUNTIME", "runc")
ULIMITS = os.environ.get("CONTAINER_ULIMITS", "nofile=1024:1024 nproc=1024:1024").split()


def missing_tools() -> List[str]:
    """What building and running the image needs that is not installed."""
    tools = {"podman": "podman", "buildah": "buildah", "debootstrap": "debootstrap", RUNTIME: RUNTIME}
    return [package for tool, package in tools.items() if shutil.which(tool) is None]


def build_image(timeout: int = 3600) -> str:
    """scripts/build_image.sh: the stand-in base if needed, then the cached build; the image id."""
    result = subprocess.run([os.path.join(REPO_ROOT, "scripts", "build_image.sh"), IMAGE_TAG],
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"image build failed:\n{result.stderr[-6000:]}")
    return result.stdout.strip().splitlines()[-1]


def podman(args: List[str], stdin: Optional[str] = None, timeout: int = 1800) -> subprocess.CompletedProcess:
    """`podman <args>`, with this machine's runtime and, for `run`, its rlimits."""
    command = ["podman", "--runtime", RUNTIME] + args[:1]
    if args[:1] == ["run"]:
        for limit in ULIMITS:
            command += ["--ulimit", limit]
    return subprocess.run(command + args[1:], input=stdin, capture_output=True, text=True, timeout=timeout)
