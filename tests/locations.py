"""Where things are, for tests in any folder under tests/ (this folder is on sys.path: conftest.py lives here)."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent  # the helpers (tiny_lm, loopback, blocking_plugin, accelerate_driver) live here
ROOT = TESTS.parent  # the repository
SRC = ROOT / "src" / "strop"
SHARED = ROOT.parent / "shared" / "data"  # the benchmark data beside the clone (tests that need it skip without it)
