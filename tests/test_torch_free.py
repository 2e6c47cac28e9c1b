"""The data and task layers, the command-line parser and the commands that need no model run where
torch cannot be imported (a process in which ``import torch`` fails)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = "import sys; sys.modules['torch'] = None; sys.modules['policy_heads.base'] = None\n"


def run_without_torch(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_collect_data_info_and_teleop_help_run_without_torch(tmp_path):
    out = tmp_path / "fp.hdf5"
    code = (f"from imitate.cli import main\n"
            f"assert main(['collect', 'imitate/ForkedPath-v0', '--episodes', '3', '--out', {str(out)!r}, '--quiet']) == 0\n"
            f"assert main(['data', 'info', {str(out)!r}, '--json']) == 0\n"
            "import imitate.teleop, imitate.envs, imitate.data, imitate.collect\n"
            "try:\n    main(['teleop', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "print('TORCH', 'torch' in sys.modules and sys.modules['torch'] is not None)\n")
    res = run_without_torch(code)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "TORCH False" in res.stdout
    assert out.is_file() and '"demos": 3' in res.stdout


def test_the_parser_builds_every_command_without_torch():
    code = ("from imitate.cli import build_parser\n"
            "p = build_parser()\n"
            "a = p.parse_args(['train', '--data', 'd.hdf5', '--out', 'r', '--head', 'gmm', '--steps', '10', "
            "'--set', 'num_modes=3'])\n"
            "assert a.command == 'train' and a.steps == '10' and a.set == ['num_modes=3']\n"
            "for argv in (['compare', '--data', 'd', '--out', 'o', '--steps', '5'], ['dagger', '--out', 'o', '--head', 'gmm'],"
            " ['gail', '--data', 'd', '--out', 'o'], ['rl', '--env', 'Pendulum-v1', '--out', 'o'], ['irl'],"
            " ['export', 'r', '--out', 'o'], ['eval', 'r'], ['demo']):\n"
            "    assert p.parse_args(argv).command == argv[0]\n"
            "print('ok')\n")
    res = run_without_torch(code)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-3000:]


def test_version_flag():
    res = run_without_torch("from imitate.cli import main\nmain(['--version'])\n")
    assert res.returncode == 0 and res.stdout.startswith("imitate ")
