"""The dependency locks are generated, complete and what the environment runs.

`requirements/compile.sh` turns the short top-level lists
(`requirements/requirements.in`, `requirements/requirements-py312.in`) into
the locks (`requirements/constraints.txt`, `requirements/constraints-py312.txt`)
with `uv pip compile` at fixed upload cutoffs. These tests rerun that command
into a temporary directory and require the committed files to be exactly its
output, so a hand edit or a list changed without regenerating fails here.

They need uv (scripts/bootstrap.sh installs it into .venv-tools/) and PyPI;
without uv the two resolution tests are skipped and say why.
"""
import ast
import difflib
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
REQ = ROOT / "requirements"
LOCK_310 = REQ / "constraints.txt"
LOCK_312 = REQ / "constraints-py312.txt"

# The set the project was proven on (Python 3.10, glibc 2.36). Changing any of
# these is a deliberate act: edit requirements.in, regenerate, rerun the suite.
PROVEN_310 = {
    "tfx": "1.16.0",
    "tensorflow": "2.16.2",
    "tf-keras": "2.16.0",
    "keras": "3.6.0",
    "tensorflow-data-validation": "1.16.1",
    "tensorflow-transform": "1.16.0",
    "tensorflow-model-analysis": "0.47.1",
    "tfx-bsl": "1.16.1",
    "ml-metadata": "1.16.0",
    "apache-beam": "2.59.0",  # with other Beam versions `import tfx_bsl` fails
    "pyarrow": "10.0.1",
    "numpy": "1.26.4",
    "pandas": "1.5.3",
    "protobuf": "3.20.3",
    "kfp": "2.5.0",
    "kfp-pipeline-spec": "0.2.2",
    "kfp-kubernetes": "1.0.0",
    "vega-datasets": "0.9.0",
    "kubernetes-validate": "1.32.0",
    "fastapi": "0.141.1",
    "uvicorn": "0.54.0",
    "streamlit": "1.60.0",
}

EXPECTED_312 = {
    "tfx": "1.21.0",
    "tensorflow": "2.21.0",
    "tensorflow-data-validation": "1.21.0",
    "tensorflow-transform": "1.21.0",
    "tfx-bsl": "1.21.0",
    "ml-metadata": "1.21.0",
    "tensorflow-model-analysis": "0.52.0",
    "protobuf": "6.33.6",
    "numpy": "2.4.6",
    "pandas": "2.3.3",
    "kfp": "2.16.1",
    "kfp-kubernetes": "2.16.1",
    "fastapi": "0.141.1",
    "uvicorn": "0.54.0",
    "streamlit": "1.60.0",
}

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def read_pins(path):
    """{canonical name: version} of a lock file; every requirement line must be a pin."""
    pins = {}
    for raw in Path(path).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("--hash="):
            continue
        m = PIN.match(line)
        assert m, f"{path.name}: not an exact pin: {raw!r}"
        pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def read_in(path):
    """Requirements of a .in file."""
    reqs = []
    for raw in Path(path).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            reqs.append(Requirement(line))
    return reqs


def setup_py_requirements():
    """install_requires and every extra of setup.py, read without running it."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, "id", None) == "setup")
    kw = {k.arg: ast.literal_eval(k.value) for k in call.keywords
          if k.arg in ("install_requires", "extras_require")}
    reqs = {"install_requires": [Requirement(r) for r in kw["install_requires"]]}
    for extra, items in kw["extras_require"].items():
        reqs[extra] = [Requirement(r) for r in items]
    return reqs


def pinned_uv_version():
    m = re.search(r'^UV_VERSION="([^"]+)"', (ROOT / "scripts/bootstrap.sh").read_text(), re.M)
    assert m, "scripts/bootstrap.sh no longer pins UV_VERSION"
    return m.group(1)


def find_uv():
    for cand in (os.environ.get("UV"), str(ROOT / ".venv-tools/bin/uv"), shutil.which("uv")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


@pytest.fixture(scope="module")
def uv():
    path = find_uv()
    if path is None:
        pytest.skip("uv is not installed (neither $UV, .venv-tools/bin/uv nor uv on PATH): "
                    "run scripts/bootstrap.sh or `pip install uv` to check that the locks "
                    "are what requirements/compile.sh generates")
    return path


def compile_lock(uv, which, out_dir):
    env = dict(os.environ, UV=uv)
    # Sdists whose metadata uv must build are built with this interpreter.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(["bash", str(REQ / "compile.sh"), which, str(out_dir)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"requirements/compile.sh {which} failed:\n{proc.stderr[-4000:]}"


def assert_same_lock(uv, committed, generated):
    uv_version = subprocess.run([uv, "--version"], capture_output=True, text=True).stdout.split()[1]
    if uv_version == pinned_uv_version():
        want, got = committed.read_text(), generated.read_text()
        if want != got:
            diff = "".join(difflib.unified_diff(
                want.splitlines(True), got.splitlines(True),
                f"committed {committed.name}", "requirements/compile.sh output", n=1))
            pytest.fail(f"{committed.name} is not what requirements/compile.sh produces; "
                        f"rerun it and commit the result:\n{diff[:6000]}")
    else:
        # Another uv may word its comments differently; the pins must still agree.
        assert read_pins(committed) == read_pins(generated), (
            f"{committed.name}: pins differ from requirements/compile.sh output (uv {uv_version})")


def test_py310_lock_is_what_compile_produces(uv, tmp_path):
    compile_lock(uv, "py310", tmp_path)
    assert_same_lock(uv, LOCK_310, tmp_path / "constraints.txt")


def test_py312_lock_resolves_for_python312_manylinux_2_39(uv, tmp_path):
    # Resolution only: glibc 2.36 machines cannot install TFX 1.21's wheels.
    compile_lock(uv, "py312", tmp_path)
    generated = tmp_path / "constraints-py312.txt"
    pins = read_pins(generated)
    for name, version in EXPECTED_312.items():
        assert pins.get(name) == version, f"py312 resolution: {name} {pins.get(name)} != {version}"
    assert_same_lock(uv, LOCK_312, generated)


@pytest.mark.parametrize("lock", [LOCK_310, LOCK_312], ids=["py310", "py312"])
def test_every_pin_carries_hashes(lock):
    # uv checks each downloaded file against these (compile.sh --generate-hashes).
    text = lock.read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    unhashed = [b.split()[0] for b in blocks if PIN.match(b) and "--hash=sha256:" not in b]
    assert len(blocks) > 200 and not unhashed, f"{lock.name}: pins without hashes: {unhashed}"


def test_py310_lock_keeps_the_proven_set():
    pins = read_pins(LOCK_310)
    wrong = {n: (pins.get(n), v) for n, v in PROVEN_310.items() if pins.get(n) != v}
    assert not wrong, f"constraints.txt moved off the proven set (got, want): {wrong}"
    assert pins["pyspark"].startswith("3.5."), pins["pyspark"]
    assert "httpx" in pins and "pytest" in pins and "nbclient" in pins


@pytest.mark.parametrize("lock_in,lock", [
    ("requirements.in", LOCK_310), ("requirements-py312.in", LOCK_312)])
def test_every_top_level_and_setup_py_requirement_is_locked(lock_in, lock):
    pins = read_pins(lock)
    reqs = read_in(REQ / lock_in) + [r for rs in setup_py_requirements().values() for r in rs]
    problems = []
    for req in reqs:
        got = pins.get(canonicalize_name(req.name))
        if got is None:
            problems.append(f"{req} is not in {lock.name}")
        elif not req.specifier.contains(got, prereleases=True):
            problems.append(f"{req} but {lock.name} has {got}")
    assert not problems, "\n".join(problems)


def test_serve_extra_has_the_prediction_service_stack():
    extras = setup_py_requirements()
    serve = {canonicalize_name(r.name) for r in extras["serve"]}
    assert {"fastapi", "uvicorn", "streamlit", "httpx"} <= serve, serve


def test_running_environment_is_the_locked_set():
    """The interpreter running the tests was installed from the lock for its Python."""
    lock = {(3, 10): LOCK_310, (3, 12): LOCK_312}.get(sys.version_info[:2])
    if lock is None:
        pytest.skip(f"no lock for Python {sys.version_info[0]}.{sys.version_info[1]}")
    # The first of each name on sys.path is what imports: setuptools appends its
    # _vendor directory (importlib_metadata, wheel, ...) to sys.path once imported.
    installed = {}
    for distribution in metadata.distributions():
        installed.setdefault(canonicalize_name(distribution.metadata["Name"]), distribution.version)
    wrong = {n: (installed.get(n), v) for n, v in read_pins(lock).items() if installed.get(n) != v}
    assert not wrong, (f"installed (got) differs from {lock.name} (want); rebuild the venv "
                       f"with scripts/bootstrap.sh: {dict(sorted(wrong.items()))}")
