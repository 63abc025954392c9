"""`--model rolevec_hf` resolves after a plain install: the .pth start-up hook and the wheel contents."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest
from conftest import REPO


def run(code: str, *flags: str, cwd=None) -> str:
    out = subprocess.run(
        [sys.executable, *flags, "-c", code], capture_output=True, text=True, check=True, cwd=cwd
    )
    return out.stdout.strip()


def test_plain_interpreter_imports_neither_torch_nor_lm_eval():
    assert run("import sys; print('torch' in sys.modules, 'lm_eval' in sys.modules)") == "False False"
    assert run("import sys; print(type(sys.meta_path[0]).__name__)") == "_RegistryFinder"


def test_rolevec_hf_resolves_and_builtin_models_still_work():
    code = (
        "from lm_eval.api.registry import get_model; import sys; "
        "print(get_model('rolevec_hf').__name__, get_model('hf').__name__, get_model('dummy').__name__, "
        "'rolevec_lmeval.model' in sys.modules)"
    )
    assert run(code) == "RoleVecLM HFLM DummyLM True"


def test_lm_eval_cli_knows_rolevec_hf():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lm_eval",
            "--model",
            "rolevec_hf",
            "--model_args",
            "role=chemist,layer=99,alpha=1",
            "--tasks",
            "mmlu_high_school_chemistry",
            "--limit",
            "1",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert "layer=99 is out of range; valid: 0..29" in out.stderr + out.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
    )
    return next(out.glob("rolevec_lmeval-*.whl"))


def test_wheel_install_registers_without_editable_hooks(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        entry_points = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
        zf.extractall(tmp_path)
    assert "rolevec_lmeval_startup.pth" in names
    assert (
        "[lm_eval.models]" in entry_points and "rolevec_hf = rolevec_lmeval.model:RoleVecLM" in entry_points
    )
    assert any(n.startswith("rolevec_lmeval/_task_configs/") for n in names)
    # -S: no site processing (the editable install's .pth files are ignored); then add the unpacked wheel
    # as a site dir (processes its .pth) and the venv's site-packages as plain path entries.
    site_paths = [p for p in sys.path if p.endswith("site-packages")]
    code = (
        f"import site, sys; site.addsitedir({str(tmp_path)!r}); sys.path += {site_paths!r}; "
        "from lm_eval.api.registry import get_model; import rolevec_lmeval; "
        "print(get_model('rolevec_hf').__module__, rolevec_lmeval.__file__)"
    )
    module, location = run(code, "-S", cwd=tmp_path).split()  # cwd: keep the checkout off sys.path
    assert module == "rolevec_lmeval.model" and location.startswith(str(tmp_path))
