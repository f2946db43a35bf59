"""Settings for the test processes themselves (not for the commands the tests start)."""
import os


def pytest_configure(config):
    # `make test` runs two pytest-xdist workers. With torch's default of one thread per core
    # each, two workers kept four busy threads (and OpenMP's spinning ones) on two cores:
    # the suite took 1,120-1,130 s of CPU in about 610 s, against 850-880 s in 476-483 s with
    # one thread a worker (measured 2026-11-30 on 2 Zen 3 cores). The cores are shared out instead.
    # Commands the tests start as processes of their own keep torch's default.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, torch.get_num_threads() // workers))
