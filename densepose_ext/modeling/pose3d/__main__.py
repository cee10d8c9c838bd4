"""``python -m densepose_ext.modeling.pose3d --dataset D --k K --out F.npz``: build 3D-pose
classes (see :func:`densepose_ext.modeling.pose3d.classes.main`)."""
from .classes import main

if __name__ == "__main__":
    main()
