"""A quiet start for the commands. Before a command's first line, TensorFlow's C++ log says
that oneDNN is on, that no CUDA driver was found, which CPU instructions the binary was
built without and, where a CUDA library is installed but no GPU, that cuInit failed: about
nine lines, most printed while `import tensorflow` runs, before TensorFlow reads
TF_CPP_MIN_LOG_LEVEL. `quiet_tensorflow` leaves out those INFO lines, and the CUDA lines
on a machine with no GPU; every other warning and error still shows, and
TF_CPP_MIN_LOG_LEVEL=0 shows everything.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator

# A line of TensorFlow's C++ log, in absl's format: severity, month and day, time, thread, file:line.
_LOG_LINE = re.compile(r"([IWEF])\d{4} [\d:.]+ +\d+ [^ \]]+:\d+\] (.*)")
# What absl prints once per library before the first line it logs.
_ABSL_NOTE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_CUDA = re.compile(r"cuda|cuInit", re.IGNORECASE)


def has_gpu_device() -> bool:
    """Whether the machine shows an NVIDIA GPU (Linux, or WSL's GPU bridge)."""
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.exists("/dev/dxg")


def is_noise(line: str, gpu_device: bool) -> bool:
    """Whether `line` of TensorFlow's start-up log is one a user does not need: an INFO
    line or absl's note, and, with no `gpu_device`, CUDA's failure to find one."""
    if line.startswith(_ABSL_NOTE):
        return True
    record = _LOG_LINE.match(line)
    if record is None:  # Python's own output, a traceback say
        return False
    severity, message = record.groups()
    if _CUDA.search(message):
        # With a GPU in the machine, a CUDA line says why TensorFlow is not using it.
        return not gpu_device
    return severity == "I"


@contextlib.contextmanager
def _stderr_without(noise: Callable[[str], bool]) -> Iterator[None]:
    """Passes file descriptor 2 (where C++ writes) through a filter line by line, as it
    comes, so what precedes a crash is still shown."""
    sys.stderr.flush()
    terminal = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward() -> None:
        with open(read_end, "rb") as pipe:
            for line in pipe:
                if not noise(line.decode(errors="replace")):
                    os.write(terminal, line)

    forwarder = threading.Thread(target=forward, daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(terminal, 2)  # closes the pipe's last write end, so the forwarder ends
        forwarder.join()
        os.close(terminal)


def quiet_tensorflow() -> None:
    """Imports TensorFlow and finds its devices with the start-up noise left out, and,
    unless TF_CPP_MIN_LOG_LEVEL is set, sets it to 1 (no INFO lines) for the rest of the
    run. Does nothing when TF_CPP_MIN_LOG_LEVEL is 0 or TensorFlow is already imported."""
    if "tensorflow" in sys.modules or os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1") == "0":
        return
    gpu_device = has_gpu_device()
    with _stderr_without(lambda line: is_noise(line, gpu_device)):
        import tensorflow as tf

        tf.config.list_physical_devices()  # where CUDA's cuInit runs
