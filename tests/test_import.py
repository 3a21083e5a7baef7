"""``import nnseg`` must be cheap and free of side effects; the public API must resolve."""

from __future__ import annotations

import json
import subprocess
import sys

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
