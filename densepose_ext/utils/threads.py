"""Run torch code with a fixed thread count, restored afterwards."""
import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def torch_single_thread() -> Iterator[None]:
    """One torch thread inside the block: small-tensor work gains nothing from more on a CPU,
    loses much when cores are shared, and its results then do not depend on the caller's
    thread settings (the same seed gives the same bytes everywhere)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
