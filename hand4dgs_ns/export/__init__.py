"""Writers that take the 4D hands out of the tool: per-frame Gaussian splats and meshes.

Pure functions of host arrays (no network, no files other than the one they write), so the
``hand4dgs export`` command and anyone holding a prediction can call them.
"""

from hand4dgs_ns.export.meshes import MeshFormat, hands_mesh, write_hands_mesh
from hand4dgs_ns.export.splats import SH_C0, Splats, read_splats_ply, splats_ply, write_splats_ply

__all__ = ["SH_C0", "MeshFormat", "Splats", "hands_mesh", "read_splats_ply", "splats_ply", "write_hands_mesh", "write_splats_ply"]
