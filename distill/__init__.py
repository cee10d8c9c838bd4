"""Training data made by models: ground-truth interpolation (dense targets from a teacher,
:mod:`distill.interpolate`), pseudo-labels of unlabelled images by multi-transform inference
(:mod:`distill.pseudo_label`), and their measurement against the embedded renderer's exact
labels (:mod:`distill.evaluate_targets`, :mod:`distill.evaluate_pseudo_labels`). The
directories they write are read and registered by the library
(:mod:`densepose_ext.data.interpolated`, :mod:`densepose_ext.data.pseudo_labeled`).
"""
