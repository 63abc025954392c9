"""rolevec-lmeval: role-vector steering for lm-evaluation-harness.

Importing the package is cheap (no torch, no lm_eval); heavy modules are imported on use.
"""

from __future__ import annotations

__version__ = "0.1.0"
