"""Argument parsing for each ``videoact`` sub-command (see ``videoact/cli.py``)."""


def tune_cpu_allocator(device: str) -> None:
    """For commands that run the backbone: on the CPU, keep freed memory in the process
    (:func:`videoact.extract.keep_freed_memory`, as ``videoact extract`` does), so each
    batch of frames does not page-fault its activation maps in again (measured: Lite0 at
    448 px, 8 frames a batch, another job running: 10-11 frames/s without, 47-53 with)."""
    from ..extract import keep_freed_memory, resolve_device

    try:
        cpu = resolve_device(device).type == "cpu"
    except (RuntimeError, ValueError):  # a bad --device: the command reports it itself
        return
    if cpu:
        keep_freed_memory()
