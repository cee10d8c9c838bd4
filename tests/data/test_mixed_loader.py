"""Mixed training batches: fixed per-dataset shares of every batch, per rank under DDP."""
import itertools
from unittest import mock

import numpy as np
import pytest
from detectron2.data import DatasetCatalog

from densepose_ext.data.mixed_loader import (MixedBatchSampler, batch_composition,
                                             build_mixed_train_loader, check_train_ratios)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 4, 5, 16])
def test_composition_tracks_the_ratios_within_one_image(batch_size):
    ratios = (0.6, 0.4)
    drawn = np.zeros(2)
    for step, counts in enumerate(itertools.islice(batch_composition(ratios, batch_size), 500), 1):
        assert counts.sum() == batch_size and (counts >= 0).all()
        # each batch holds floor or ceil of its share
        assert (np.abs(counts - np.asarray(ratios) * batch_size) < 1).all()
        drawn += counts
        assert (np.abs(drawn - np.asarray(ratios) * batch_size * step) < 1 + 1e-9).all()
    assert drawn[0] / drawn.sum() == pytest.approx(0.6, abs=1e-3)


def test_three_datasets_and_bad_ratios():
    counts = np.stack(list(itertools.islice(batch_composition((0.5, 0.3, 0.2), 4), 1000)))
    np.testing.assert_allclose(counts.sum(0) / counts.sum(), (0.5, 0.3, 0.2), atol=1e-3)
    with pytest.raises(ValueError, match="TRAIN_RATIOS has 1 entries for 2"):
        check_train_ratios(["a", "b"], (1.0,))
    with pytest.raises(ValueError, match="sum to 1"):
        check_train_ratios(["a", "b"], (0.6, 0.6))


def _batches(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_sampler_draws_each_dataset_in_its_share_and_covers_it():
    sampler = MixedBatchSampler([10, 7], (0.6, 0.4), batch_size=5, seed=3)
    batches = _batches(sampler, 70)
    a = [i for b in batches for i in b if i < 10]
    b = [i for b in batches for i in b if i >= 10]
    assert all(len(batch) == 5 and sum(i < 10 for i in batch) == 3 for batch in batches)
    assert set(a) == set(range(10)) and set(b) == set(range(10, 17))
    # shuffled passes: the first 10 indices of dataset A are one permutation of it
    assert sorted(a[:10]) == list(range(10))
    assert _batches(MixedBatchSampler([10, 7], (0.6, 0.4), 5, seed=3), 70) == batches


def test_ranks_share_the_batch_and_see_different_images():
    per_rank = []
    for rank in (0, 1):
        with mock.patch("densepose_ext.data.mixed_loader.comm.get_rank", return_value=rank), \
                mock.patch("densepose_ext.data.mixed_loader.comm.get_world_size", return_value=2):
            per_rank.append(_batches(MixedBatchSampler([20, 20], (0.5, 0.5), 2, seed=0), 10))
    seen = [set(i for b in batches for i in b) for batches in per_rank]
    assert not seen[0] & seen[1]  # one pass split between the ranks
    assert seen[0] | seen[1] == set(range(40))


def test_loader_yields_mapped_batches_in_the_ratio(tmp_path):
    from densepose_ext.config import get_densepose_cfg

    for name, n in (("mix_a", 12), ("mix_b", 5)):
        DatasetCatalog.register(name, lambda name=name, n=n: [
            {"file_name": f"{name}/{k}.jpg", "image_id": k, "height": 8, "width": 8,
             "annotations": [{"bbox": [0, 0, 4, 4], "bbox_mode": 1, "category_id": 0}]}
            for k in range(n)])
    try:
        cfg = get_densepose_cfg()
        cfg.merge_from_list(["DATASETS.TRAIN", ("mix_a", "mix_b"), "DATASETS.TRAIN_RATIOS",
                             (0.75, 0.25), "SOLVER.IMS_PER_BATCH", 4, "DATALOADER.NUM_WORKERS",
                             0, "SEED", 1])
        loader = build_mixed_train_loader(cfg, mapper=lambda d: d["file_name"])
        batches = list(itertools.islice(iter(loader), 20))
        assert all(len(b) == 4 and sum(f.startswith("mix_a") for f in b) == 3 for b in batches)
        cfg.DATASETS.TRAIN_RATIOS = (0.5,)
        with pytest.raises(ValueError, match="TRAIN_RATIOS"):
            build_mixed_train_loader(cfg, mapper=lambda d: d)
    finally:
        for name in ("mix_a", "mix_b"):
            DatasetCatalog.remove(name)
