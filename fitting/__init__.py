"""Model-fitting baseline: 2D keypoints -> a fitted 3D body -> its rendered IUV, scored as
DensePose (the DensePose paper's comparison).

``camera`` (the camera assumed from the image size), ``body`` (differentiable COCO keypoints
of SMPL parameters), ``prior`` (pose prior from training poses, shape regulariser),
``optimize`` (batched two-stage fit), ``inputs`` (ground-truth or predicted keypoints),
``render`` (fits -> IUV result records), ``pipeline`` (resumable run + evaluation);
``python -m fitting`` is the command.
"""
