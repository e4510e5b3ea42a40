"""`python -m experiments.pretrain` whose chief takes FINISH_SECONDS longer over its
finishing (probes, figures, export), as on a large data set; with FINISH_ERROR set, the
finishing then fails with that message. Run as a script by test_multi_worker, from the
checkout: `experiments` is importable from the checkout's root (an installed package names it
`contrastive_tf_experiments`), so the root goes first on the path."""

import os
import pathlib
import runpy
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from contrastive_tf import pretraining
from contrastive_tf.errors import UsageError

_finalize = pretraining.finalize


def _slow_finalize(*args, **kwargs):
    time.sleep(float(os.environ["FINISH_SECONDS"]))
    if os.environ.get("FINISH_ERROR"):
        raise UsageError(os.environ["FINISH_ERROR"])
    return _finalize(*args, **kwargs)


pretraining.finalize = _slow_finalize
runpy.run_module("experiments.pretrain", run_name="__main__")
