"""The commands' quiet start: TensorFlow's start-up noise goes, warnings and errors stay."""

import os

import pytest

from experiments.console import _stderr_without, is_noise

# What TensorFlow 2.21 prints while it starts on a CPU machine with a CUDA library.
START_UP = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796542758.399784   13308 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors from different computation orders.",
    "I0000 00:00:1796542758.400168   13308 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU "
    "will not be used.",
    "I0000 00:00:1796542758.568426   13308 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
    "available CPU instructions in performance-critical operations.",
    "E0000 00:00:1796542771.741298   13308 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
    "Failed call to cuInit: UNKNOWN ERROR (303)",
]
KEPT = [
    "W0000 00:00:1796542771.741298   13308 op_kernel.cc:1857] OP_REQUIRES failed at save_restore_v2_ops.cc:228",
    "E0000 00:00:1796542771.741298   13308 coordination_service_agent.cc:624] Coordination agent is in ERROR",
    "Traceback (most recent call last):",
    "ImportError: libcudart.so.12: cannot open shared object file: No such file or directory",
    "error: unknown method 'simclrr'; choose one of simclr, moco",
]


@pytest.mark.parametrize("line", START_UP)
def test_start_up_lines_are_noise_on_a_machine_without_a_gpu(line):
    assert is_noise(line, gpu_device=False)


@pytest.mark.parametrize("line", KEPT)
def test_warnings_errors_and_python_output_are_kept(line):
    assert not is_noise(line, gpu_device=False) and not is_noise(line, gpu_device=True)


def test_cuda_lines_are_kept_on_a_machine_with_a_gpu():
    """There they say why TensorFlow is not using it."""
    cuda = [line for line in START_UP if "cuda" in line.lower()]
    assert len(cuda) == 2 and not any(is_noise(line, gpu_device=True) for line in cuda)


def test_the_filter_passes_every_line_that_is_not_noise(capfd):
    with _stderr_without(lambda line: is_noise(line, gpu_device=False)):
        for line in START_UP + KEPT:
            os.write(2, f"{line}\n".encode())
    assert capfd.readouterr().err.splitlines() == KEPT
