"""The layering rules of DESIGN.md §1, enforced by import-linter (.importlinter)."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_hold():
    lint = Path(sys.executable).parent / "lint-imports"
    assert lint.exists(), "import-linter is a test dependency: make setup installs it"
    result = subprocess.run([str(lint), str(ROOT / ".importlinter")], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
