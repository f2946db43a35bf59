"""videoact shortens OpenMP's busy-wait before torch loads, and leaves a user's choice alone."""
from __future__ import annotations

import os
import subprocess
import sys

SHOW = "import os; {imports}; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"


def _run(imports: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    environ.update(env)
    proc = subprocess.run([sys.executable, "-c", SHOW.format(imports=imports)], capture_output=True,
                          text=True, env=environ, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_importing_videoact_first_sets_a_short_spin():
    assert _run("import videoact; import torch") == "10000 None"


def test_a_users_setting_is_kept():
    assert _run("import videoact", GOMP_SPINCOUNT="500") == "500 None"
    assert _run("import videoact", OMP_WAIT_POLICY="ACTIVE") == "None ACTIVE"


def test_nothing_is_set_once_torch_is_loaded():
    """libgomp read the environment when torch loaded: setting it later would only mislead."""
    assert _run("import torch; import videoact") == "None None"
