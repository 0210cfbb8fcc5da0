"""A procedural room with a table, ray-cast per pixel, so the background is consistent across frames and views.

The room is a box (floor, four walls, ceiling) around the person with a table in front of
them, in the world frame of :mod:`.camera_path`. Each surface has a seeded procedural
texture (wood, laminate or a checked cloth on the table; tiles, planks or carpet on the
floor; painted walls with a few panels such as cupboards, frames and windows). Because the
room is geometry rather than a 2-D picture, the head camera's motion produces the right
parallax and the static cameras see the same room.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from hand4dgs_ns.synthetic.procedural import WaveNoise, cell_hash, wave_noise
from hand4dgs_ns.synthetic.scene_render import Lighting, light_tensor

# Everyday material colours (sRGB), jittered per room.
_WOODS = np.array([[0.55, 0.38, 0.22], [0.72, 0.55, 0.36], [0.36, 0.24, 0.15], [0.82, 0.70, 0.52], [0.62, 0.45, 0.3]])
_LAMINATES = np.array(
    [[0.88, 0.88, 0.85], [0.7, 0.7, 0.68], [0.8, 0.74, 0.62], [0.18, 0.18, 0.19], [0.35, 0.42, 0.5], [0.45, 0.5, 0.42]]
)
_CLOTHS = np.array([[0.62, 0.16, 0.15], [0.2, 0.3, 0.55], [0.25, 0.45, 0.3], [0.5, 0.5, 0.52], [0.75, 0.6, 0.3]])
_LIGHTS = np.array([[0.92, 0.92, 0.9], [0.95, 0.93, 0.86], [0.85, 0.87, 0.9]])
_TILES = np.array([[0.8, 0.8, 0.78], [0.85, 0.8, 0.7], [0.62, 0.36, 0.26], [0.5, 0.52, 0.55], [0.9, 0.9, 0.9]])
_CARPETS = np.array([[0.45, 0.45, 0.47], [0.35, 0.4, 0.5], [0.5, 0.42, 0.35], [0.3, 0.32, 0.3]])
_WALLS = np.array(
    [[0.92, 0.91, 0.87], [0.88, 0.83, 0.74], [0.8, 0.81, 0.82], [0.76, 0.84, 0.9], [0.8, 0.87, 0.78], [0.93, 0.88, 0.7]]
)
_PANELS = np.array(
    [[0.95, 0.95, 0.93], [0.55, 0.38, 0.22], [0.25, 0.25, 0.27], [0.85, 0.9, 0.97], [0.6, 0.2, 0.2], [0.3, 0.45, 0.6]]
)


@dataclass(frozen=True)
class Room:
    """A room's geometry (world frame, metres) and texture parameters."""

    bounds: Float[np.ndarray, "2 3"]
    """Box corners (min, max): floor at z = 0."""
    table: Float[np.ndarray, " 5"]
    """Table top: x0, x1, y0, y1, height."""
    table_style: str
    """"wood", "laminate" or "cloth"."""
    floor_style: str
    """"tiles", "planks" or "carpet"."""
    colours: dict[str, np.ndarray]
    """Named sRGB colours: table_a, table_b, floor_a, floor_b, wall, ceiling."""
    panels: Float[np.ndarray, "P 8"]
    """Rectangles on the walls: wall index (0..3), u0, u1, z0, z1, r, g, b."""
    grain: WaveNoise
    """Wood-grain distortion and general surface noise."""
    scale: float
    """Tile / plank / check size in metres."""


def sample_room(rng: np.random.Generator, eye_height: float) -> Room:
    """A random room with a table about 0.6-0.75 m below the person's eyes."""
    half_width = rng.uniform(1.6, 3.0)
    bounds = np.array(
        [[-half_width, -rng.uniform(1.2, 2.5), 0.0], [half_width, rng.uniform(1.8, 3.5), rng.uniform(2.4, 3.0)]]
    )
    table_height = eye_height - rng.uniform(0.6, 0.75)
    x_shift = rng.uniform(-0.25, 0.25)
    table = np.array(
        [
            x_shift - rng.uniform(0.5, 0.9),
            x_shift + rng.uniform(0.5, 0.9),
            rng.uniform(0.14, 0.22),
            rng.uniform(0.75, 1.1),
            table_height,
        ]
    )

    def pick(palette: np.ndarray) -> np.ndarray:
        return np.clip(palette[rng.integers(len(palette))] * rng.uniform(0.9, 1.08) + rng.normal(0, 0.02, 3), 0, 1)

    table_style = str(rng.choice(["wood", "laminate", "cloth"]))
    floor_style = str(rng.choice(["tiles", "planks", "carpet"]))
    table_a = pick(_WOODS if table_style == "wood" else _LAMINATES if table_style == "laminate" else _CLOTHS)
    table_b = table_a * 0.7 if table_style == "wood" else pick(_LIGHTS)
    floor_a = pick({"tiles": _TILES, "planks": _WOODS, "carpet": _CARPETS}[floor_style])
    colours = {
        "table_a": table_a,
        "table_b": table_b,
        "floor_a": floor_a,
        "floor_b": floor_a * 0.6,
        "wall": pick(_WALLS),
        "ceiling": np.full(3, rng.uniform(0.8, 0.95)),
    }
    panels = []
    for _ in range(int(rng.integers(3, 9))):
        wall = int(rng.integers(4))
        u0 = rng.uniform(-1.5, 1.2)
        z0 = rng.uniform(0.0, 1.6)
        panels.append([wall, u0, u0 + rng.uniform(0.3, 1.2), z0, z0 + rng.uniform(0.3, 1.0), *pick(_PANELS)])
    return Room(
        bounds=bounds,
        table=table,
        table_style=table_style,
        floor_style=floor_style,
        colours={key: np.clip(value, 0, 1) for key, value in colours.items()},
        panels=np.asarray(panels, dtype=np.float64),
        grain=wave_noise(rng, 2.0, 40.0, count=8),
        scale=float(rng.uniform(0.25, 0.6)),
    )


def _colour(room: Room, key: str) -> Tensor:
    return torch.from_numpy(room.colours[key]).float()


def _table_texture(room: Room, p: Tensor) -> Tensor:
    x, y = p[:, 0], p[:, 1]
    noise = room.grain(p * 3.0)
    a, b = _colour(room, "table_a"), _colour(room, "table_b")
    if room.table_style == "wood":
        # Grain lines run along x, wavering slowly; fine streaks on top.
        rings = torch.sin(90.0 * (y + 0.01 * noise + 0.02 * torch.sin(2.0 * x))) * 0.5 + 0.5
        streaks = torch.sin(700.0 * y + 3.0 * noise) * 0.5 + 0.5
        mix = 0.6 * rings**4 + 0.15 * streaks
        return a * (1 - mix[:, None]) + b * mix[:, None]
    if room.table_style == "cloth":
        size = room.scale * 0.25
        stripes = ((torch.floor(x / size) + torch.floor(y / size)) % 2)[:, None]
        return (a * (1 - stripes) + b * stripes) * (1.0 + 0.03 * noise[:, None])
    return a * (1.0 + 0.04 * noise[:, None])


def _floor_texture(room: Room, p: Tensor) -> Tensor:
    x, y = p[:, 0], p[:, 1]
    noise = room.grain(p * 5.0)
    a, b = _colour(room, "floor_a"), _colour(room, "floor_b")
    if room.floor_style == "tiles":
        i, j = torch.floor(x / room.scale), torch.floor(y / room.scale)
        fx, fy = x / room.scale - i, y / room.scale - j
        grout = ((fx < 0.03) | (fy < 0.03)).float()[:, None]
        tile = a * (0.9 + 0.2 * cell_hash(i, j)[:, None])
        return tile * (1 - grout) + b * grout
    if room.floor_style == "planks":
        width = room.scale * 0.35
        row = torch.floor(x / width)
        col = torch.floor((y + cell_hash(row, row, 1.0) * 3.0) / (room.scale * 4.0))
        shade = 0.8 + 0.35 * cell_hash(row, col)[:, None]
        seam = ((x / width - row) < 0.04).float()[:, None]
        grain = 1.0 + 0.08 * torch.sin(80.0 * x + 4.0 * noise)[:, None]
        return a * shade * grain * (1 - 0.5 * seam)
    return (a * 0.8 + b * 0.2) * (1.0 + 0.12 * room.grain(p * 40.0)[:, None])


def _wall_texture(room: Room, p: Tensor, wall: Tensor) -> Tensor:
    # Wall coordinate u runs along the wall, z is height.
    u = torch.where(wall < 2, p[:, 1], p[:, 0])
    z = p[:, 2]
    base = _colour(room, "wall") * (0.85 + 0.15 * (z / room.bounds[1, 2]).clamp(0, 1))[:, None]
    noise = room.grain(p * 4.0)[:, None]
    colour = base * (1.0 + 0.03 * noise)
    baseboard = (z < 0.1).float()[:, None]
    colour = colour * (1 - baseboard) + 0.9 * _colour(room, "ceiling") * baseboard
    for panel in room.panels:
        inside = (wall == int(panel[0])) & (u > panel[1]) & (u < panel[2]) & (z > panel[3]) & (z < panel[4])
        rim = (
            (torch.minimum(u - panel[1], panel[2] - u) < 0.025) | (torch.minimum(z - panel[3], panel[4] - z) < 0.025)
        ) & inside
        fill = torch.tensor(panel[5:8], dtype=torch.float32)
        colour = torch.where(inside[:, None], fill * (1.0 + 0.05 * noise), colour)
        colour = torch.where(rim[:, None], fill * 0.55, colour)
    return colour


def _room_light(
    lighting: Lighting,
    points: Float[Tensor, "P 3"],
    normals: Float[Tensor, "P 3"],
    lamp: Float[Tensor, "P 3"],
) -> Float[Tensor, "P 3"]:
    """Light falling on room surfaces (world frame): ambient, the head lamp with a distance
    falloff (rooms are lit over metres, hands over centimetres), and the distant lights."""
    to_light = lamp - points
    distance = to_light.norm(dim=-1).clamp(min=1e-3)
    lambert = ((to_light / distance[:, None]) * normals).sum(-1).clamp(min=0.0)
    lamp_light = lighting.room_lamp * lambert / (1.0 + (distance / 1.2) ** 2)
    light = lighting.room_ambient + lamp_light[:, None] * light_tensor(lighting.lamp_colour)
    for distant in lighting.distant:
        light = light + (normals @ light_tensor(distant.direction)).clamp(min=0.0)[:, None] * light_tensor(distant.colour)
    return light


def render_room(
    room: Room,
    c2w: Float[Tensor, "B 4 4"],
    K: Float[Tensor, "B 3 3"],
    width: int,
    height: int,
    light_world: Float[Tensor, "B 3"],
    lighting: Lighting,
) -> tuple[Float[Tensor, "B H W 3"], Float[Tensor, "B H W"]]:
    """Ray-casts the room: shaded sRGB colour and camera-frame depth (z) per pixel.

    Surfaces are lit by ``lighting``: its head lamp at ``light_world``, ambient and distant lights.
    """
    B = c2w.shape[0]
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    pix = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(-1, 3)  # (P, 3)
    dirs_cam = pix @ torch.linalg.inv(K.float()).transpose(-1, -2)  # (B, P, 3), z = 1
    rot = c2w[:, :3, :3].float()
    origin = c2w[:, :3, 3].float()
    dirs = dirs_cam @ rot.transpose(-1, -2)  # world direction scaled so camera z = 1
    o = origin[:, None, :].expand_as(dirs)

    lo = torch.from_numpy(room.bounds[0]).float()
    hi = torch.from_numpy(room.bounds[1]).float()
    safe = torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    # Leaving the box: on each axis the wall the ray heads towards.
    exit_t = torch.where(dirs > 0, (hi - o) / safe, (lo - o) / safe)
    t_box, axis = exit_t.min(dim=-1)
    positive = torch.gather(dirs, -1, axis[..., None]).squeeze(-1) > 0
    # Surface id: 0 x-min wall, 1 x-max wall, 2 y-min, 3 y-max, 4 floor, 5 ceiling.
    surface = axis * 2 + positive.long()

    x0, x1, y0, y1, table_z = (float(v) for v in room.table)
    t_table = (table_z - o[..., 2]) / safe[..., 2]
    hit_table = (t_table > 0) & (t_table < t_box)
    p_table = o + t_table[..., None] * dirs
    hit_table &= (p_table[..., 0] > x0) & (p_table[..., 0] < x1) & (p_table[..., 1] > y0) & (p_table[..., 1] < y1)
    t = torch.where(hit_table, t_table, t_box)
    surface = torch.where(hit_table, torch.full_like(surface, 6), surface)
    points = o + t[..., None] * dirs

    flat_points = points.reshape(-1, 3)
    flat_surface = surface.reshape(-1)
    colour = torch.zeros_like(flat_points)
    wall_normals = torch.tensor(
        [[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0], [0, 0, 1.0], [0, 0, -1.0], [0, 0, 1.0]]
    )
    normal = wall_normals[flat_surface]
    table = flat_surface == 6
    floor = flat_surface == 4
    ceiling = flat_surface == 5
    walls = flat_surface < 4
    colour[table] = _table_texture(room, flat_points[table])
    colour[floor] = _floor_texture(room, flat_points[floor])
    colour[ceiling] = _colour(room, "ceiling")
    colour[walls] = _wall_texture(room, flat_points[walls], flat_surface[walls])
    edge = table & (
        (torch.minimum(flat_points[:, 0] - x0, x1 - flat_points[:, 0]) < 0.012)
        | (torch.minimum(flat_points[:, 1] - y0, y1 - flat_points[:, 1]) < 0.012)
    )
    colour[edge] *= 0.6

    light = _room_light(lighting, flat_points, normal, light_world[:, None, :].expand_as(points).reshape(-1, 3))
    rgb = (colour * light).clamp(0.0, 1.0).reshape(B, height, width, 3)
    return rgb, t.reshape(B, height, width)
