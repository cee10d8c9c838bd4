#!/usr/bin/env python
"""Train or evaluate DensePose R-CNN models (detectron2-style command line).

    python train_net.py --config-file configs/embedded/densepose_rcnn_R_18_GN_FPN.yaml
    python train_net.py --config-file C --eval-only MODEL.WEIGHTS output/model_final.pth
    python train_net.py --config-file C --eval-only MODEL.WEIGHTS W TEST.AUG.ENABLED True \
        TEST.AUG.MIN_SIZES "(224, 256, 288)" TEST.AUG.FLIP True   # + multi-transform inference
    python train_net.py --config-file C --num-gpus 8 SOLVER.IMS_PER_BATCH 16
    # several machines: add --num-machines N --machine-rank R --dist-url tcp://HOST:PORT

Trailing ``KEY VALUE`` pairs override the config. Checkpoints, ``metrics.json``, tensorboard
events, evaluation outputs (``inference/<dataset>/``) and every metric of the last
evaluation (``eval_results.json``) go to ``OUTPUT_DIR``; checkpoints, ``last_checkpoint`` and
``eval_results.json`` are written atomically (temp file + fsync + rename). ``--resume`` takes
the last checkpoint that loads (a truncated one is reported and skipped). A bad input or
argument prints ``error: <message>`` and exits with status 2 (traceback with ``--debug`` or
``DENSEPOSE_DEBUG=1``).
"""
import json
import os

import torch

from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

import synthesis.builtin_datasets  # noqa: F401  (registers the built-in datasets)
from densepose_ext.engine import Trainer
from densepose_ext.engine.mean_teacher import register_teacher
from densepose_ext.modeling.checkpoint import DensePoseCheckpointer
from densepose_ext.utils import atomic_write
from densepose_ext.utils.cli import load_config, run_cli


def setup(args):
    """Config from file + command-line overrides, frozen; logging and output dir set up."""
    if (args.num_gpus > 1 or args.num_machines > 1) and not torch.cuda.is_available():
        raise ValueError("--num-gpus/--num-machines > 1 need CUDA, which is not available")
    cfg = load_config(args.config_file, args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    # our modules' messages (evaluator tables, dataset checks) beside detectron2's, same log file
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="densepose_ext")
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        checkpointer = DensePoseCheckpointer.from_config(cfg, model, save_dir=cfg.OUTPUT_DIR)
        register_teacher(checkpointer, model)  # a mean-teacher checkpoint's teacher too
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        results = Trainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:  # multi-transform inference as well
            results.update(Trainer.test_with_TTA(cfg, model))
        if comm.is_main_process():
            verify_results(cfg, results)
            _save_results(cfg, results)
        return results
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    results = trainer.last_eval_results  # the evaluation after the last iteration, if any
    if results and comm.is_main_process():
        _save_results(cfg, results)
    return results


def _save_results(cfg, results) -> None:
    """Every metric of the last evaluation, as json, in OUTPUT_DIR/eval_results.json."""
    with atomic_write(os.path.join(cfg.OUTPUT_DIR, "eval_results.json"), "w") as f:
        json.dump(results, f, indent=2)


def invoke_main() -> None:
    parser = default_argument_parser()
    args = parser.parse_args()
    if args.num_gpus < 0 or args.num_machines < 1:
        parser.error(f"--num-gpus must be >= 0 and --num-machines >= 1, got {args.num_gpus} "
                     f"and {args.num_machines}")
    if not 0 <= args.machine_rank < args.num_machines:
        parser.error(f"--machine-rank must be in 0..{args.num_machines - 1}, got {args.machine_rank}")
    if not args.config_file:
        parser.error("--config-file is required")
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    run_cli(invoke_main)
