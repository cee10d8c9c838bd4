from .cache import atomic_write, cache_dir, file_sha256
from .memory import measure_memory
from .threads import torch_single_thread

__all__ = ["atomic_write", "cache_dir", "file_sha256", "measure_memory", "torch_single_thread"]
