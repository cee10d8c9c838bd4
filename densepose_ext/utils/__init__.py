from .cache import atomic_write, cache_dir

__all__ = ["atomic_write", "cache_dir"]
