"""``import nnseg`` must be cheap and free of side effects; the public API must resolve."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import nnseg

PROBE = """
import json, os, sys
before = dict(os.environ)
import nnseg
after = dict(os.environ)
heavy = sorted(m for m in ("torch", "SimpleITK", "scipy", "blosc2", "batchgenerators",
                           "dynamic_network_architectures", "nnunetv2", "timm", "torchvision") if m in sys.modules)
print(json.dumps({"env_changed": before != after, "heavy": heavy}))
"""


def test_import_has_no_side_effects() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result == {"env_changed": False, "heavy": []}


ENV_PROBE = """
import importlib, json, os, pkgutil, sys
package_dir = os.path.join(sys.argv[1], "nnseg")
reads = []
original = type(os.environ).__getitem__

def recording_getitem(self, key):
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.endswith(("os.py", "_collections_abc.py", "os>", "_collections_abc>")):
        frame = frame.f_back
    if frame is not None and frame.f_code.co_filename.startswith(package_dir):
        reads.append(f"{frame.f_code.co_filename}:{frame.f_lineno} reads {key!r}")
    return original(self, key)

type(os.environ).__getitem__ = recording_getitem
import nnseg
for info in pkgutil.walk_packages(nnseg.__path__, "nnseg."):
    if not info.name.startswith(("nnseg.cli", "nnseg.__main__")):
        importlib.import_module(info.name)
print(json.dumps(reads))
"""


def test_importing_any_library_module_reads_no_environment_variable() -> None:
    """DESIGN: only nnseg/cli/ may read the environment (the architecture test checks the source too)."""
    repo = str(Path(nnseg.__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", ENV_PROBE, repo], capture_output=True, text=True, check=True, cwd=repo)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_cuda_not_initialised_by_public_api() -> None:
    probe = "import nnseg, torch\n[getattr(nnseg, n) for n in nnseg.__all__]\nprint(torch.cuda.is_initialized())"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", nnseg.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(nnseg, name) is not None


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'Trainerr'"):
        _ = nnseg.Trainerr  # type: ignore[attr-defined]


def test_python_dash_m_runs_the_cli() -> None:
    out = subprocess.run([sys.executable, "-m", "nnseg", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"nnseg {nnseg.__version__}"
