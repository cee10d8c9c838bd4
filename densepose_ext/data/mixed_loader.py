"""Training batches drawn from several datasets in fixed proportions (``DATASETS.TRAIN_RATIOS``).

Data distillation trains on labelled and pseudo-labelled images, each minibatch ~60% / 40%;
mean teacher mixes labelled and unlabelled images the same way. detectron2 concatenates the
``DATASETS.TRAIN`` datasets and samples the union uniformly, so a batch's composition follows
the datasets' sizes instead. :class:`MixedBatchSampler` fixes it per batch: each batch takes
``ratio * batch_size`` images of each dataset, rounded so that the running totals never drift by
a whole image from the exact proportions.
"""
from __future__ import annotations

import itertools
import logging
from typing import Iterator, List, Optional, Sequence

import numpy as np
import torch
from detectron2.data.build import (get_detection_dataset_dicts, trivial_batch_collator,
                                   worker_init_reset_seed)
from detectron2.data.common import DatasetFromList, MapDataset
from detectron2.utils import comm
from torch.utils.data import Sampler

__all__ = ["MixedBatchSampler", "batch_composition", "build_mixed_train_loader",
           "check_train_ratios"]

logger = logging.getLogger(__name__)


def check_train_ratios(names: Sequence[str], ratios: Sequence[float]) -> np.ndarray:
    """The ratios as an array; a ValueError naming the config keys when they do not fit."""
    r = np.asarray(ratios, dtype=np.float64)
    if len(r) != len(names):
        raise ValueError(f"DATASETS.TRAIN_RATIOS has {len(r)} entries for {len(names)} "
                         f"DATASETS.TRAIN datasets {tuple(names)}")
    if (r <= 0).any() or abs(r.sum() - 1.0) > 1e-6:
        raise ValueError(f"DATASETS.TRAIN_RATIOS {tuple(ratios)} must be positive and sum to 1")
    return r


def batch_composition(ratios: Sequence[float], batch_size: int) -> Iterator[np.ndarray]:
    """Images per dataset in each successive batch: ``ratio * batch_size`` rounded so that the
    totals after every batch differ from ``ratio * images so far`` by less than one image."""
    r = np.asarray(ratios, dtype=np.float64)
    drawn = np.zeros(len(r), dtype=np.int64)
    for step in itertools.count(1):
        target = r * batch_size * step - drawn  # what each dataset is owed
        counts = np.floor(target).astype(np.int64)
        short = batch_size - int(counts.sum())
        if short > 0:  # the largest remainders get one more (earlier dataset on ties)
            order = np.argsort(-(target - counts), kind="stable")
            counts[order[:short]] += 1
        drawn += counts
        yield counts


class MixedBatchSampler(Sampler):
    """Infinite batches of indices into the concatenation of datasets of ``sizes``.

    Each dataset is read as detectron2's TrainingSampler reads one: shuffled passes from a seed
    shared by all ranks, rank r taking every world_size-th index, so ranks see different
    images. ``batch_size`` is this rank's share of the batch.
    """

    def __init__(self, sizes: Sequence[int], ratios: Sequence[float], batch_size: int,
                 seed: Optional[int] = None):
        if any(int(s) <= 0 for s in sizes):
            raise ValueError(f"every mixed dataset needs images, got sizes {tuple(sizes)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sizes = [int(s) for s in sizes]
        self.ratios = list(ratios)
        self.batch_size = int(batch_size)
        self.seed = int(comm.shared_random_seed() if seed is None else seed)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).tolist()
        self.rank, self.world_size = comm.get_rank(), comm.get_world_size()

    def _stream(self, k: int) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self.seed + 1000003 * k)

        def passes():
            while True:
                yield from torch.randperm(self.sizes[k], generator=g).tolist()

        for i in itertools.islice(passes(), self.rank, None, self.world_size):
            yield self.offsets[k] + i

    def __iter__(self) -> Iterator[List[int]]:
        streams = [self._stream(k) for k in range(len(self.sizes))]
        for counts in batch_composition(self.ratios, self.batch_size):
            yield [i for k, n in enumerate(counts) for i in itertools.islice(streams[k], int(n))]


def build_mixed_train_loader(cfg, mapper) -> torch.utils.data.DataLoader:
    """Infinite training loader over ``DATASETS.TRAIN`` in the ``DATASETS.TRAIN_RATIOS``
    proportions: lists of mapped dicts, ``SOLVER.IMS_PER_BATCH / world_size`` per rank.

    Each dataset is filtered as detectron2's loader filters it (empty and few-keypoint images);
    batches are not grouped by aspect ratio.
    """
    names = list(cfg.DATASETS.TRAIN)
    ratios = check_train_ratios(names, cfg.DATASETS.TRAIN_RATIOS)
    world = comm.get_world_size()
    if cfg.SOLVER.IMS_PER_BATCH % world:
        raise ValueError(f"SOLVER.IMS_PER_BATCH {cfg.SOLVER.IMS_PER_BATCH} is not divisible by "
                         f"the {world} processes")
    min_kp = (cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE if cfg.MODEL.KEYPOINT_ON else 0)
    dicts = [get_detection_dataset_dicts(
        [name], filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
        min_keypoints=min_kp) for name in names]
    logger.info("Mixed training batches: %s", ", ".join(
        f"{name} ({len(d)} images) {r:.0%}" for name, d, r in zip(names, dicts, ratios)))
    dataset = MapDataset(DatasetFromList(list(itertools.chain(*dicts)), copy=False), mapper)
    sampler = MixedBatchSampler([len(d) for d in dicts], ratios,
                                cfg.SOLVER.IMS_PER_BATCH // world, seed=cfg.SEED
                                if cfg.SEED >= 0 else None)
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=cfg.DATALOADER.NUM_WORKERS,
        collate_fn=trivial_batch_collator, worker_init_fn=worker_init_reset_seed)
