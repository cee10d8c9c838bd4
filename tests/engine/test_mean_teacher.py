"""Mean teacher: schedules and the EMA update by formula, consistency costs (zero at agreement,
gradient towards the teacher), the teacher's view geometry, no gradient into the teacher, a
short training run that evaluates and resumes teacher and student exactly, and identical
teachers on two DDP processes."""
import math

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.events import EventStorage
from torch import nn

import synthesis.builtin_datasets  # noqa: F401  (registers the built-in datasets)
from densepose_ext.data import DensePoseDatasetMapper
from densepose_ext.data import without_annotations
from densepose_ext.modeling.consistency import (box_consistency, densepose_consistency,
                                                ema_decay, ema_update, keypoint_consistency,
                                                mask_consistency, sigmoid_rampup)
from densepose_ext.modeling.mean_teacher import MeanTeacherModel, make_teacher_view
from densepose_ext.structures import DensePoseChartOutput
from toys import tiny_cfg

MINI = "densepose_embedded_mini"
UNLABELED = "densepose_embedded_mini_unlabeled_test"
OPTS = {"MODEL.MASK_ON": True, "MODEL.KEYPOINT_ON": True,
        "MODEL.ROI_KEYPOINT_HEAD.CONV_DIMS": (16,), "MODEL.ROI_MASK_HEAD.CONV_DIM": 16,
        "MEAN_TEACHER.ENABLED": True, "MEAN_TEACHER.TEACHER_SCORE_THRESH": 0.0,
        "MEAN_TEACHER.RAMPUP_ITERS": 4, "DATASETS.TRAIN": (MINI, UNLABELED),
        "DATASETS.TRAIN_RATIOS": (0.5, 0.5), "DATASETS.TEST": (MINI,)}


def setup_module():
    if UNLABELED not in DatasetCatalog.list():
        DatasetCatalog.register(UNLABELED, lambda: [without_annotations(r) for r in
                                                    DatasetCatalog.get(MINI)])
        MetadataCatalog.get(UNLABELED).set(**{
            k: v for k, v in MetadataCatalog.get(MINI).as_dict().items()
            if k not in ("name", "json_file")})


def test_schedules_follow_the_paper():
    assert sigmoid_rampup(0, 10) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(5, 10) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(10, 10) == sigmoid_rampup(99, 10) == sigmoid_rampup(0, 0) == 1.0
    assert ema_decay(0, 10, 0.99, 0.999) == 0.0  # the first teacher is the student
    assert ema_decay(3, 10, 0.99, 0.999) == pytest.approx(0.75)
    assert ema_decay(5000, 10, 0.99, 0.999) == 0.999 and ema_decay(200, 1000, 0.99, 0.999) == 0.99
    assert ema_decay(500, 10, 0.0, 0.0) == 0.0  # the Pi-model: the teacher is the student


def test_ema_update_matches_the_formula_and_copies_buffers():
    torch.manual_seed(0)
    student, teacher = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    for m in (student, teacher):
        nn.init.normal_(m.weight)
        nn.init.normal_(m.bias)
    student.running_mean.fill_(2.0)
    expected = 0.9 * teacher.weight.detach() + 0.1 * student.weight.detach()
    ema_update(teacher, student, 0.9)
    torch.testing.assert_close(teacher.weight, expected)
    assert torch.equal(teacher.running_mean, student.running_mean)
    ema_update(teacher, student, 0.0)
    assert torch.equal(teacher.bias, student.bias)


def _chart(seed, n=2, s=4):
    g = torch.Generator().manual_seed(seed)
    return DensePoseChartOutput(coarse_segm=torch.randn(n, 2, s, s, generator=g),
                                fine_segm=torch.randn(n, 25, s, s, generator=g),
                                u=torch.rand(n, 25, s, s, generator=g),
                                v=torch.rand(n, 25, s, s, generator=g))


def test_costs_vanish_at_agreement_and_pull_towards_the_teacher():
    x = torch.randn(5, 2)
    assert box_consistency(x, x) == 0 and mask_consistency(x[:, None, None], x[:, None, None]) == 0
    k = torch.randn(3, 17, 6, 6)
    assert keypoint_consistency(k, k) == 0
    same = densepose_consistency(_chart(0), _chart(0))
    assert all(v == 0 for v in same.values())
    # the teacher prefers class 1 more than the student: descent raises the student's logit
    student = torch.zeros(1, 2, requires_grad=True)
    box_consistency(student, torch.tensor([[0.0, 3.0]])).backward()
    assert student.grad[0, 1] < 0 < student.grad[0, 0]
    # U is pulled to the teacher's where the teacher believes in the part
    s, t = _chart(1), _chart(2)
    s.u.requires_grad_(True)
    densepose_consistency(s, t)["uv"].backward()
    p = torch.softmax(t.fine_segm, 1)[:, 1:]
    expected = p * 2 * (s.u[:, 1:] - t.u[:, 1:]) / s.u[:, 0].numel()
    torch.testing.assert_close(s.u.grad[:, 1:], expected.detach())
    assert torch.equal(s.u.grad[:, 0], torch.zeros_like(s.u.grad[:, 0]))


def test_teacher_view_boxes_map_back_onto_the_same_content():
    image = torch.zeros(3, 60, 80)
    image[:, 10:30, 50:70] = 200.0  # an object at x 50..70, y 10..30 of the student view
    gain, offset = torch.ones(3), torch.zeros(3)
    for flip in (False, True):
        view, tfm = make_teacher_view(image, flip, 1.5, gain, offset)
        assert view.shape[-2:] == (90, 120)
        ys, xs = torch.nonzero(view[0] > 100, as_tuple=True)
        found = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float)
        torch.testing.assert_close(tfm.boxes_to_student(found),
                                   torch.tensor([[50.0, 10.0, 70.0, 30.0]]), atol=1.0, rtol=0)


def _batch(cfg):
    mapper = DensePoseDatasetMapper(cfg, True)
    labelled = mapper(DatasetCatalog.get(MINI)[0])
    unlabelled = mapper(without_annotations(DatasetCatalog.get(MINI)[1]))
    assert "instances" in labelled and "instances" not in unlabelled
    return [labelled, unlabelled]


def test_student_learns_from_both_images_and_the_teacher_takes_no_gradient():
    cfg = tiny_cfg(**OPTS)
    from detectron2.modeling import build_model

    torch.manual_seed(0)
    model = MeanTeacherModel(cfg, build_model(cfg)).train()
    assert not model.teacher.training
    with EventStorage(4):
        losses = model(_batch(cfg))
    names = set(losses)
    assert {"loss_densepose_I", "loss_keypoint", "loss_mask", "loss_cls"} <= names
    assert {"loss_consistency_box", "loss_consistency_mask", "loss_consistency_keypoint",
            "loss_consistency_densepose_fine_segm", "loss_consistency_densepose_uv"} <= names
    sum(losses.values()).backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert not any(p.requires_grad for p in model.teacher.parameters())
    grads = [p.grad for p in model.student.roi_heads.densepose_predictor.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # the teacher starts as the student, and its state is not in the wrapper's state dict
    assert set(model.state_dict()) == set(model.student.state_dict())
    model.eval()
    with torch.no_grad():
        out = model([{"image": _batch(cfg)[0]["image"], "height": 256, "width": 256}])
    assert out[0]["instances"].has("pred_densepose")


def test_training_evaluates_the_teacher_and_resume_restores_both_exactly(tmp_path):
    from densepose_ext.engine import Trainer
    from densepose_ext.engine.mean_teacher import unwrap_mean_teacher

    opts = dict(OPTS, **{"SOLVER.MAX_ITER": 2, "SOLVER.IMS_PER_BATCH": 2,
                         "SOLVER.CHECKPOINT_PERIOD": 2, "SOLVER.WARMUP_ITERS": 1,
                         "TEST.EVAL_PERIOD": 0, "DATALOADER.NUM_WORKERS": 0,
                         "MODEL.WEIGHTS": "", "MEAN_TEACHER.EVAL_MODEL": "both",
                         "MEAN_TEACHER.EMA_DECAY_RAMPUP": 0.5, "OUTPUT_DIR": str(tmp_path)})
    cfg = tiny_cfg(**opts)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    mt = unwrap_mean_teacher(trainer.model)
    student = {k: v.clone() for k, v in mt.student.state_dict().items()}
    teacher = {k: v.clone() for k, v in mt.teacher.state_dict().items()}
    assert any(not torch.equal(student[k], teacher[k]) for k in student)  # a real average
    saved = torch.load(tmp_path / "model_final.pth", map_location="cpu", weights_only=False)
    assert set(saved["teacher"]) == set(saved["model"]) == set(student)
    results = Trainer.test(cfg, trainer.model)
    assert "densepose_summary" in results and "densepose_summary_student" in results

    resumed = Trainer(cfg)
    resumed.resume_or_load(resume=True)
    again = unwrap_mean_teacher(resumed.model)
    assert all(torch.equal(again.student.state_dict()[k], v) for k, v in student.items())
    assert all(torch.equal(again.teacher.state_dict()[k], v) for k, v in teacher.items())


def _ddp_worker(rank: int, world: int, init_file: str, out: str):
    import torch.distributed as dist
    from detectron2.modeling import build_model
    from torch.nn.parallel import DistributedDataParallel

    from densepose_ext.modeling.consistency import ema_decay, ema_update

    setup_module()
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    torch.set_num_threads(1)
    cfg = tiny_cfg(**OPTS)
    torch.manual_seed(rank)  # different initial weights: DDP must broadcast rank 0's
    model = MeanTeacherModel(cfg, build_model(cfg)).train()
    ddp = DistributedDataParallel(model, broadcast_buffers=False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    mapper = DensePoseDatasetMapper(cfg, True)
    records = DatasetCatalog.get(MINI)
    for step in range(2):
        torch.manual_seed(100 * rank + step)  # each rank: its own images and teacher views
        batch = [mapper(records[2 * rank + step]), mapper(without_annotations(records[8 + rank]))]
        with EventStorage(step):
            losses = ddp(batch)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
        ema_update(model.teacher, model.student, ema_decay(step, 1, 0.5, 0.9))
    flat = torch.cat([p.detach().flatten() for p in model.teacher.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    if rank == 0:
        torch.save(torch.stack(gathered), out)
    dist.destroy_process_group()


def test_two_ddp_processes_keep_identical_teachers(tmp_path):
    import torch.multiprocessing as mp

    out = tmp_path / "teachers.pt"
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2)
    teachers = torch.load(out)
    assert torch.equal(teachers[0], teachers[1])
