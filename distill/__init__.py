"""Training-data generation from models: ground-truth interpolation (dense targets from a
teacher, :mod:`distill.interpolate`), their registration (:mod:`distill.datasets`) and their
measurement against the embedded renderer's exact labels (:mod:`distill.evaluate_targets`).

Submodules are imported on demand: ``densepose_ext.data`` imports :mod:`distill.datasets` at
registration time, so this package must stay light.
"""
