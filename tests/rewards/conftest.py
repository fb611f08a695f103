"""Make `reward_fns_for_tests` importable by dotted path (also in spawned verifier workers, which inherit
sys.path), as a user's own reward module would be."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
