from .cache import atomic_write, cache_dir
from .memory import measure_memory

__all__ = ["atomic_write", "cache_dir", "measure_memory"]
