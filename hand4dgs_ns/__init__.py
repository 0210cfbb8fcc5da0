"""Hand-4DGS for nerfstudio: feed-forward 3D Gaussian splatting for 4D hand reconstruction.

Conventions, stated once for the whole package:

- Units: metres everywhere inside the package; pose metrics are reported in millimetres.
- Camera axes: OpenCV (x right, y down, z forward) for every camera the package stores or
  computes with. nerfstudio wants OpenGL axes (x right, y up, z backward); the one conversion
  lives in :mod:`hand4dgs_ns.geometry.cameras` and is applied only where ``Cameras`` are built.
- ``c2w`` is camera-to-world, ``w2c`` (gsplat's ``viewmat``) world-to-camera; points are
  column vectors: ``p_world = R @ p_cam + t``.
- Quaternions are ``wxyz`` (gsplat, PyTorch3D); convert at the boundary if a source uses xyzw.
- Joint order: the 21 OpenPose hand joints: 0 wrist; 1-4 thumb (CMC, MCP, IP, tip);
  5-8 index (MCP, PIP, DIP, tip); 9-12 middle; 13-16 ring; 17-20 pinky.
- Hand slots: index 0 is the left hand, index 1 the right hand.
- Images are float32 in [0, 1], shaped (H, W, 3) per frame; pixel centres at integer + 0.5.
"""

__version__ = "0.1.0"
