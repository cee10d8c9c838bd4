"""``Trainer``: detectron2's DefaultTrainer with DensePose data loading, checkpoints and evaluators."""
import logging
import os
import weakref
from collections import OrderedDict

import torch
from detectron2.data import MetadataCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators
from detectron2.utils import comm

from ..body import BodyModel
from ..data import (DensePoseDatasetMapper, PersonCropMapper, build_mixed_train_loader,
                    build_person_crop_train_loader)
from ..evaluation import DensePoseEvaluator, Pose3DEvaluator
from ..modeling.checkpoint import DensePoseCheckpointer
from ..modeling.mean_teacher import MeanTeacherModel
from ..modeling.pose3d import classes_file_for_cfg, load_or_build_pose_classes
from ..modeling.test_time_augmentation import DensePoseRCNNWithTTA

from .mean_teacher import (MeanTeacherHook, evaluate_mean_teacher, register_teacher,
                           unwrap_mean_teacher)

__all__ = ["Trainer"]

logger = logging.getLogger(__name__)


def _has_fast_coco_eval() -> bool:
    """Whether detectron2 was built with its C++ COCO evaluation (a Python-only install is not)."""
    try:
        from detectron2 import _C  # compiled extension: absent in some installs

        _C.InstanceAnnotation  # noqa: B018
    except ImportError:
        return False
    return True


class Trainer(DefaultTrainer):
    """Trains and evaluates DensePose R-CNN models from a config.

    Compared with ``DefaultTrainer``: images go through :class:`DensePoseDatasetMapper` (so
    ``gt_densepose`` reaches the ROI heads), checkpoints through :class:`DensePoseCheckpointer`
    (which also reads detectron2 DensePose model-zoo files), and every test set gets COCO
    box/mask/keypoint AP for the enabled heads plus DensePose GPS/GPSm AP and pointwise AUC
    (MODEL.DENSEPOSE_ON) and 3D-pose MPJPE / class accuracy (MODEL.POSE3D_ON).
    With MODEL.DENSEPOSE_FCN.SINGLE_PERSON_CROP the loaders give one crop per annotated person
    (:mod:`densepose_ext.data.person_crop_mapper`).
    """

    def build_hooks(self):
        # The checkpointer must exist before the default hooks capture it.
        self.checkpointer = DensePoseCheckpointer.from_config(
            self.cfg, self._trainer.model, self.cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        register_teacher(self.checkpointer, self._trainer.model)
        hooks = super().build_hooks()
        mean_teacher = unwrap_mean_teacher(self._trainer.model)
        if mean_teacher is not None:  # EMA update before the step's checkpoint and evaluation
            mt = self.cfg.MEAN_TEACHER
            hooks.insert(2, MeanTeacherHook(mean_teacher, mt.RAMPUP_ITERS, mt.EMA_DECAY_RAMPUP,
                                            mt.EMA_DECAY))
        return hooks

    def resume_or_load(self, resume=True):
        """As DefaultTrainer's, with :class:`DensePoseCheckpointer`'s checked resume (a bad last
        checkpoint falls back to the previous good one). A resume of a finished schedule whose
        ``model_final.pth`` is missing or does not load (a kill during its save) writes it from
        the state just loaded, which is the state the final save would have written."""
        self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        if resume and self.checkpointer.has_checkpoint():
            # the checkpoint stores the iteration that just finished: start at the next one
            self.start_iter = self.iter + 1
            final = os.path.join(self.cfg.OUTPUT_DIR, "model_final.pth")
            if self.start_iter >= self.max_iter and comm.is_main_process():
                why = self.checkpointer.unreadable_reason(final)
                if why is not None:
                    logger.warning("Resumed a finished schedule (iteration %d of %d) whose %s "
                                   "is bad (%s): writing it from the last checkpoint",
                                   self.iter + 1, self.max_iter, final, why)
                    self.checkpointer.save("model_final", iteration=self.iter)

    @classmethod
    def build_model(cls, cfg):
        """The config's model; under MEAN_TEACHER.ENABLED wrapped with its EMA teacher."""
        model = super().build_model(cfg)
        if cfg.MEAN_TEACHER.ENABLED:
            model = MeanTeacherModel(cfg, model)
        return model

    @property
    def last_eval_results(self):
        """Metrics of the latest evaluation run by the training hooks (None before any)."""
        return getattr(self, "_last_eval_results", None)

    @classmethod
    def build_train_loader(cls, cfg):
        if cfg.MODEL.DENSEPOSE_FCN.SINGLE_PERSON_CROP:  # one crop per annotated person
            if cfg.DATASETS.TRAIN_RATIOS:
                raise ValueError("DATASETS.TRAIN_RATIOS is not supported with "
                                 "MODEL.DENSEPOSE_FCN.SINGLE_PERSON_CROP")
            return build_person_crop_train_loader(cfg)
        mapper = DensePoseDatasetMapper(cfg, True)
        if cfg.DATASETS.TRAIN_RATIOS:  # fixed shares of every batch per dataset
            return build_mixed_train_loader(cfg, mapper)
        return build_detection_train_loader(cfg, mapper=mapper)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        # single-person mode: every GT person predicted on its own crop with its GT box given
        mapper_cls = (PersonCropMapper if cfg.MODEL.DENSEPOSE_FCN.SINGLE_PERSON_CROP
                      else DensePoseDatasetMapper)
        return build_detection_test_loader(cfg, dataset_name, mapper=mapper_cls(cfg, False))

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        os.makedirs(output_folder, exist_ok=True)
        evaluators = []
        tasks = ["bbox"]
        if cfg.MODEL.MASK_ON:
            tasks.append("segm")
        if cfg.MODEL.KEYPOINT_ON:
            tasks.append("keypoints")
        if MetadataCatalog.get(dataset_name).get("json_file"):
            evaluators.append(
                COCOEvaluator(
                    dataset_name,
                    tasks=tasks,
                    output_dir=output_folder,
                    use_fast_impl=_has_fast_coco_eval(),
                    kpt_oks_sigmas=cfg.TEST.KEYPOINT_OKS_SIGMAS,
                )
            )
        if cfg.MODEL.DENSEPOSE_ON:
            body = (BodyModel.from_official_files(cfg.DENSEPOSE_DATA_DIR)
                    if cfg.DENSEPOSE_DATA_DIR else None)  # None: as the dataset metadata says
            evaluators.append(
                DensePoseEvaluator(dataset_name, output_dir=output_folder, body_model=body,
                                   protocol=cfg.DENSEPOSE_EVALUATION.PROTOCOL)
            )
        if cfg.MODEL.get("POSE3D_ON", False):
            evaluators.append(Pose3DEvaluator(
                dataset_name, load_or_build_pose_classes(cfg), output_dir=output_folder,
                iou_threshold=cfg.MODEL.ROI_POSE3D_HEAD.EVAL_IOU_THRESHOLD,
                classes_file=classes_file_for_cfg(cfg)))
        if not evaluators:
            raise ValueError(f"no evaluator applies to dataset {dataset_name!r}")
        return DatasetEvaluators(evaluators)

    @classmethod
    def test(cls, cfg, model, evaluators=None) -> OrderedDict:
        mean_teacher = unwrap_mean_teacher(model)
        if mean_teacher is not None:  # the teacher, the student or both (MEAN_TEACHER.EVAL_MODEL)
            return evaluate_mean_teacher(cfg, mean_teacher,
                                         lambda c, m: cls.test(c, m, evaluators))
        with torch.no_grad():
            return super().test(cfg, model, evaluators)

    @classmethod
    def test_with_TTA(cls, cfg, model) -> OrderedDict:
        """Evaluation under multi-transform inference (``TEST.AUG``: scales, flip); metrics
        are named with a ``_TTA`` suffix and written to ``OUTPUT_DIR/inference_TTA/``."""
        if cfg.MODEL.META_ARCHITECTURE == "DensePoseFCN":
            raise ValueError("TEST.AUG applies to R-CNN models; the FCN averages scales and "
                             "flips with MODEL.DENSEPOSE_FCN.TEST_AUG")
        logger.info("Running inference with test-time augmentation: scales %s, flip %s",
                    cfg.TEST.AUG.MIN_SIZES, cfg.TEST.AUG.FLIP)
        mean_teacher = unwrap_mean_teacher(model)
        if mean_teacher is not None:  # the student only if it alone is evaluated
            model = (mean_teacher.student if cfg.MEAN_TEACHER.EVAL_MODEL == "student"
                     else mean_teacher.teacher)
        tta_model = DensePoseRCNNWithTTA(cfg, model)
        evaluators = [cls.build_evaluator(cfg, name, output_folder=os.path.join(
            cfg.OUTPUT_DIR, "inference_TTA", name)) for name in cfg.DATASETS.TEST]
        results = cls.test(cfg, tta_model, evaluators)
        return OrderedDict((name + "_TTA", value) for name, value in results.items())
