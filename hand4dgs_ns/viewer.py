"""nerfstudio's browser viewer, set up for hands.

Hands fill a few centimetres of a scene whose default viewing camera sits elsewhere, so the
viewer would open on an empty view; and each training camera's frustum carries its photo, which
covers the hands as soon as one looks through that camera. For runs of this package the viewer
therefore opens just behind the first training frame's egocentric camera, looking where it
looks, and draws the training cameras as clickable frustums without photos.

nerfstudio's ``Viewer`` offers a method no hook for either; :func:`install_viewer_setup` wraps
its ``init_scene`` once (``ns-train``, ``ns-viewer`` and the demo all call it) and changes
nothing for other methods' pipelines.
"""

from __future__ import annotations

import numpy as np

PULL_BACK_M = 0.15
"""How far behind the first egocentric camera the viewer opens (metres): both hands in view."""
FRUSTUM_COLOUR = (255, 160, 40)


def install_viewer_setup() -> None:
    """Makes nerfstudio's viewer open on the hands for runs of this package (idempotent)."""
    from nerfstudio.viewer import viewer as ns_viewer

    original = ns_viewer.Viewer.init_scene
    if getattr(original, "_for_hands", False):
        return

    def init_scene(self, train_dataset, train_state, eval_dataset=None):
        original(self, train_dataset, train_state, eval_dataset)
        if type(getattr(self.pipeline, "model", None)).__module__.startswith("hand4dgs_ns."):
            set_up_for_hands(self, train_dataset)

    init_scene._for_hands = True
    ns_viewer.Viewer.init_scene = init_scene


def viewer_pose(c2w_gl: np.ndarray, pull_back: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """viser's camera position (viewer units) and wxyz for a nerfstudio camera-to-world (OpenGL
    axes), moved ``pull_back`` scene units backwards along its view direction."""
    import viser.transforms as vtf
    from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO

    rotation = vtf.SO3.from_matrix(c2w_gl[:3, :3]) @ vtf.SO3.from_x_radians(np.pi)  # as nerfstudio draws frustums
    position = (c2w_gl[:3, 3] + pull_back * c2w_gl[:3, 2]) * VISER_NERFSTUDIO_SCALE_RATIO  # OpenGL: +z points back
    return position, rotation.wxyz


def set_up_for_hands(viewer, train_dataset) -> None:
    """Redraws the training frustums without photos and opens every browser on the first frame's hands."""
    for idx in list(viewer.camera_handles):
        camera = train_dataset.cameras[idx]
        position, wxyz = viewer_pose(camera.camera_to_worlds.cpu().numpy())
        visible = viewer.camera_handles[idx].visible
        handle = viewer.viser_server.scene.add_camera_frustum(
            name=f"/cameras/camera_{idx:05d}",  # the same node: it replaces the frustum with the photo
            fov=float(2 * np.arctan(float(camera.cy[0]) / float(camera.fy[0]))),
            aspect=float(camera.cx[0] / camera.cy[0]),
            scale=viewer.config.camera_frustum_scale,
            color=FRUSTUM_COLOUR,
            wxyz=wxyz,
            position=position,
        )
        handle.visible = visible
        handle.on_click(_look_through(viewer, idx))
        viewer.camera_handles[idx] = handle

    position, wxyz = viewer_pose(train_dataset.cameras[0].camera_to_worlds.cpu().numpy(), PULL_BACK_M)

    def open_on_hands(client) -> None:
        with client.atomic():
            client.camera.position = position
            client.camera.wxyz = wxyz

    viewer.viser_server.on_client_connect(open_on_hands)


def _look_through(viewer, idx: int):
    """A frustum's click: the browser's camera takes the training camera's pose (as nerfstudio's does)."""

    def on_click(event) -> None:
        with event.client.atomic():
            event.client.camera.position = event.target.position
            event.client.camera.wxyz = event.target.wxyz
            viewer.current_camera_idx = idx

    return on_click
