"""The body model reduced to what the fit's loss needs: its 17 COCO keypoints, differentiably.

Posing the whole mesh at every optimisation step is wasted work: the keypoints are 12 SMPL
joints, the COCO hips (hip joints pushed away from the pelvis) and five face vertices. The same
linear blend skinning as smplx (:func:`smplx.lbs.lbs`) runs on a reduced model whose "vertices"
are those five surface vertices plus 24 virtual points at the shaped rest joints (their shape
directions are the joint regressor applied to the mesh's), so that the joint regressor of the
reduced model just picks the virtual points. The fitted parameters are posed in full by
:class:`synthesis.smpl_poser.SMPLPoser`, which the renderer uses too.
"""
from __future__ import annotations

from typing import Dict

import torch
from smplx.lbs import lbs

from densepose_ext.body.body_model import get_body_model
from densepose_ext.body.keypoints import COCO_KEYPOINT_NAMES, coco_keypoints
from densepose_ext.body.pose import NUM_JOINTS
from densepose_ext.body.smpl_io import load_smplx_model

__all__ = ["KeypointBody"]

_FACE = COCO_KEYPOINT_NAMES[:5]


class KeypointBody(torch.nn.Module):
    """COCO keypoints (B, 17, 3) of SMPL parameters of the embedded body model, in metres.

    ``forward(betas (B,10), body_pose (B,69), global_orient (B,3), transl (B,3))`` gives the
    keypoints of :func:`densepose_ext.body.keypoints.coco_keypoints` applied to the posed
    mesh; ``joints`` gives the 24 posed SMPL joints.
    """

    def __init__(self, dtype: torch.dtype = torch.float32):
        super().__init__()
        bm = get_body_model()
        model = load_smplx_model(str(bm.smpl_path), batch_size=1, dtype=torch.float64)
        face: Dict[str, int] = dict(bm.template.keypoint_vertices)
        ids = torch.tensor([int(face[n]) for n in _FACE], dtype=torch.int64)
        jreg = model.J_regressor  # (24, N)
        n_face = len(ids)
        v_template = torch.cat([model.v_template[ids], jreg @ model.v_template])
        shapedirs = torch.cat([model.shapedirs[ids],
                               torch.einsum("jn,nck->jck", jreg, model.shapedirs)])
        posedirs = model.posedirs.view(model.posedirs.shape[0], -1, 3)
        no_correctives = torch.zeros(posedirs.shape[0], NUM_JOINTS, 3, dtype=posedirs.dtype)
        posedirs = torch.cat([posedirs[:, ids], no_correctives], dim=1)
        weights = torch.cat([model.lbs_weights[ids],
                             torch.zeros(NUM_JOINTS, NUM_JOINTS, dtype=torch.float64)])
        pick = torch.zeros(NUM_JOINTS, n_face + NUM_JOINTS, dtype=torch.float64)
        pick[:, n_face:] = torch.eye(NUM_JOINTS, dtype=torch.float64)
        for name, value in (("v_template", v_template), ("shapedirs", shapedirs),
                            ("posedirs", posedirs.reshape(posedirs.shape[0], -1)),
                            ("lbs_weights", weights), ("J_regressor", pick)):
            self.register_buffer(name, value.to(dtype))
        self.register_buffer("parents", model.parents.clone())
        self.num_betas = int(model.num_betas)
        self._face_index = {n: k for k, n in enumerate(_FACE)}

    def _pose(self, betas, body_pose, global_orient, transl):
        pose = torch.cat([global_orient, body_pose], dim=1)
        verts, joints = lbs(betas, pose, self.v_template, self.shapedirs, self.posedirs,
                            self.J_regressor, self.parents, self.lbs_weights)
        shift = transl[:, None, :]
        return verts + shift, joints + shift

    def joints(self, betas, body_pose, global_orient, transl) -> torch.Tensor:
        """The 24 posed SMPL joints (B, 24, 3)."""
        return self._pose(betas, body_pose, global_orient, transl)[1]

    def forward(self, betas, body_pose, global_orient, transl) -> torch.Tensor:
        verts, joints = self._pose(betas, body_pose, global_orient, transl)
        return coco_keypoints(verts, joints, vertex_ids=self._face_index)
