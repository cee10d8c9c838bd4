"""Training-loop side of the mean teacher: the EMA update after every optimizer step and the
choice of the evaluated model (see :mod:`densepose_ext.modeling.mean_teacher`)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Optional

from detectron2.engine import HookBase
from detectron2.utils.events import get_event_storage
from torch.nn.parallel import DistributedDataParallel

from ..modeling.consistency import ema_decay, ema_update
from ..modeling.mean_teacher import MeanTeacherModel

__all__ = ["unwrap_mean_teacher", "MeanTeacherHook", "evaluate_mean_teacher", "register_teacher"]

EVAL_MODELS = ("teacher", "student", "both")


def unwrap_mean_teacher(model) -> Optional[MeanTeacherModel]:
    """The :class:`MeanTeacherModel` inside ``model`` (DDP unwrapped), or None."""
    if isinstance(model, DistributedDataParallel):
        model = model.module
    return model if isinstance(model, MeanTeacherModel) else None


class MeanTeacherHook(HookBase):
    """After each optimizer step: teacher <- EMA of the student, with the decay schedule of
    :func:`~densepose_ext.modeling.consistency.ema_decay`. Every process applies the same
    update to the same (DDP-synchronised) student, so teachers stay identical across ranks."""

    def __init__(self, model: MeanTeacherModel, rampup_iters: int, decay_rampup: float,
                 decay: float):
        self.model = model
        self.rampup_iters, self.decay_rampup, self.decay = rampup_iters, decay_rampup, decay

    def after_step(self) -> None:
        step = self.trainer.iter
        d = ema_decay(step, self.rampup_iters, self.decay_rampup, self.decay)
        ema_update(self.model.teacher, self.model.student, d)
        get_event_storage().put_scalar("mean_teacher_ema_decay", d, smoothing_hint=False)


def evaluate_mean_teacher(cfg, model: MeanTeacherModel, test: Callable) -> "OrderedDict":
    """``test(cfg, m)`` on the teacher, the student or both (``MEAN_TEACHER.EVAL_MODEL``);
    with both, the student's metrics are keyed ``<name>_student``."""
    which = cfg.MEAN_TEACHER.EVAL_MODEL
    if which not in EVAL_MODELS:
        raise ValueError(f"MEAN_TEACHER.EVAL_MODEL must be one of {EVAL_MODELS}, got {which!r}")
    if which == "student":
        return test(cfg, model.student)
    results = OrderedDict(test(cfg, model.teacher))
    if which == "both":
        results.update((f"{k}_student", v) for k, v in test(cfg, model.student).items())
    return results


def register_teacher(checkpointer, model) -> None:
    """Save and load the teacher of a mean-teacher ``model`` with the checkpoints (key
    ``"teacher"``; loaded after the student, whose weights it otherwise starts from)."""
    mean_teacher = unwrap_mean_teacher(model)
    if mean_teacher is not None:
        checkpointer.add_checkpointable("teacher", mean_teacher.teacher)
