"""Shared file helpers: content hashes and the single-thread context."""
import hashlib

import numpy as np
import torch

from densepose_ext.utils import file_sha256, torch_single_thread


def test_file_sha256_matches_hashlib_across_block_boundaries(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, (1 << 20) * 2 + 17, dtype=np.uint8)
    path = tmp_path / "blob.bin"
    path.write_bytes(data.tobytes())
    assert file_sha256(path) == hashlib.sha256(data.tobytes()).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_torch_single_thread_restores_the_thread_count_also_on_error():
    before = torch.get_num_threads()
    with torch_single_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    try:
        with torch_single_thread():
            raise KeyError("inside")
    except KeyError:
        pass
    assert torch.get_num_threads() == before
