"""tools/demo.py: the schedule it gives train_net.py."""
import importlib.util

import pytest

from toys import REPO

CONFIG = str(REPO / "configs/embedded/densepose_rcnn_R_18_GN_FPN.yaml")


def _demo_module():
    spec = importlib.util.spec_from_file_location("demo_tool", REPO / "tools" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _opts(flat):
    return dict(zip(flat[::2], flat[1::2]))


def test_demo_shrinks_the_config_schedule_keeping_its_step_fractions():
    demo = _demo_module()
    opts = _opts(demo.demo_schedule(CONFIG, 1400, 0))
    # the config: 2000 iterations, steps (1550, 1800), warm-up 100
    assert opts == {"SEED": "0", "SOLVER.MAX_ITER": "1400", "SOLVER.STEPS": "(1085, 1260)",
                    "SOLVER.WARMUP_ITERS": "100", "SOLVER.CHECKPOINT_PERIOD": "700"}
    short = _opts(demo.demo_schedule(CONFIG, 50, 7))
    assert short["SOLVER.STEPS"] == "(39, 45)" and short["SOLVER.WARMUP_ITERS"] == "50"
    assert short["SEED"] == "7"


def test_demo_iters_zero_keeps_the_config_schedule_and_negative_is_refused():
    demo = _demo_module()
    assert demo.demo_schedule(CONFIG, 0, 3) == ["SEED", "3"]
    with pytest.raises(ValueError, match="--iters"):
        demo.demo_schedule(CONFIG, -1, 0)
