"""Control heads (p_stop, p_dev) and the trained checkpoints shipped for known models."""

from tigerdecode.heads.calibration import Calibrator
from tigerdecode.heads.control import (
    ControlHeads,
    HeadConfig,
    HeadsError,
    check_fingerprint,
    find_shipped,
)

__all__ = ["Calibrator", "ControlHeads", "HeadConfig", "HeadsError", "check_fingerprint",
           "find_shipped"]
