"""The on-disk feature cache: reuse, rebuilds of stale or damaged entries, per-sequence features."""

import dataclasses
import io
import json
import os
import time
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import torch
from rich.console import Console

from hand4dgs_ns.features.cache import CacheKey, FeatureCache, hand_features_for_sequence
from hand4dgs_ns.errors import Hand4DGSError
from hand4dgs_ns.features.backbones import HamerViT, SmallCNN, ViTConfig
from hand4dgs_ns.features.crops import crop_hands, crop_params, crops_to_uint8

KEY = CacheKey(frames="frames", boxes="boxes", backbone="bb:12x64", weights="w", crop="c", content="tokens")


class Builder:
    """A build function that counts its calls and yields ``data`` in chunks."""

    def __init__(self, data, chunk=3, fail_after=None):
        self.data, self.chunk, self.fail_after, self.calls = data, chunk, fail_after, 0

    def __call__(self):
        self.calls += 1
        for i, start in enumerate(range(0, len(self.data), self.chunk)):
            if self.fail_after is not None and i == self.fail_after:
                raise KeyboardInterrupt
            yield self.data[start : start + self.chunk]


def _cache(tmp_path, **kwargs):
    return FeatureCache(tmp_path / "cache", console=Console(file=io.StringIO()), **kwargs)


def _data(seed=0, f=7):
    return np.random.default_rng(seed).standard_normal((f, 2, 12, 64)).astype(np.float16)


def test_build_then_reuse(tmp_path):
    cache, build = _cache(tmp_path), Builder(_data())
    first = cache.get_or_build(KEY, build, total=7)
    second = cache.get_or_build(KEY, build, total=7)
    assert build.calls == 1
    np.testing.assert_array_equal(first, _data())
    np.testing.assert_array_equal(second, _data())
    assert isinstance(second, np.memmap) and not second.flags.writeable
    assert second.dtype == np.float16 and second.shape == (7, 2, 12, 64)
    (data,) = cache.root.glob("*.npy")
    assert data.name.startswith("tokens-") and data.with_suffix(".json").is_file()


@pytest.mark.parametrize("field", ["frames", "boxes", "weights", "crop"])
def test_stale_key_rebuilds(tmp_path, field):
    cache, build = _cache(tmp_path), Builder(_data(0))
    cache.get_or_build(KEY, build, total=7, name="entry")
    changed = dataclasses.replace(KEY, **{field: "changed"})
    rebuild = Builder(_data(1))
    out = cache.get_or_build(changed, rebuild, total=7, name="entry")
    assert rebuild.calls == 1
    np.testing.assert_array_equal(out, _data(1))
    assert cache.load(KEY, total=7, name="entry")[0] is None  # rebuilt in place: the old entry is gone
    # the entry's two files, and the lock file processes take turns with
    assert sorted(p.name for p in cache.root.iterdir()) == [".entry.lock", "entry.json", "entry.npy"]


def _truncate(data, manifest):
    data.write_bytes(data.read_bytes()[:-100])


def _flip_a_data_byte(data, manifest):
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))


def _break_header(data, manifest):
    raw = bytearray(data.read_bytes())
    raw[:6] = b"NOTNPY"
    data.write_bytes(bytes(raw))


def _edit_manifest_shape(data, manifest):
    m = json.loads(manifest.read_text())
    m["shape"][0] = 6
    manifest.write_text(json.dumps(m))


def _garble_manifest(data, manifest):
    manifest.write_text("{ not json")


def _remove_data(data, manifest):
    data.unlink()


@pytest.mark.parametrize("damage", [_truncate, _flip_a_data_byte, _break_header, _edit_manifest_shape, _garble_manifest, _remove_data])
def test_damaged_entries_rebuild(tmp_path, damage):
    cache, build = _cache(tmp_path), Builder(_data())
    cache.get_or_build(KEY, build, total=7)
    data, manifest = next(cache.root.glob("*.npy")), next(cache.root.glob("*.json"))
    damage(data, manifest)
    assert cache.load(KEY, total=7)[0] is None
    out = cache.get_or_build(KEY, build, total=7)
    assert build.calls == 2
    np.testing.assert_array_equal(out, _data())


def test_wrong_row_count_rebuilds(tmp_path):
    cache, build = _cache(tmp_path), Builder(_data(f=7))
    cache.get_or_build(KEY, build, total=7)
    array, reason = cache.load(KEY, total=8)
    assert array is None and "shape" in reason


def test_interrupted_build_leaves_nothing_that_looks_valid(tmp_path):
    cache = _cache(tmp_path)
    cache.get_or_build(KEY, Builder(_data(0)), total=7)
    changed = dataclasses.replace(KEY, boxes="new")
    with pytest.raises(KeyboardInterrupt):
        cache.get_or_build(changed, Builder(_data(1), fail_after=1), total=7)
    temporaries = [p for p in cache.root.iterdir() if p.name.startswith(".") and p.suffix != ".lock"]
    assert not temporaries, "temporary files were left behind"
    assert cache.load(KEY, total=7)[0] is None and cache.load(changed, total=7)[0] is None
    with pytest.raises(RuntimeError, match="yielded 6 rows"):
        cache.get_or_build(changed, Builder(_data(1)[:6]), total=7)


def test_progress_bar_works_without_a_terminal(tmp_path):
    script = textwrap.dedent(f"""
        import numpy as np
        from hand4dgs_ns.features.cache import CacheKey, FeatureCache
        key = CacheKey("f", "b", "bb", "w", "c", "tokens")
        out = FeatureCache({str(tmp_path)!r}).get_or_build(key, lambda: (np.ones((2, 2, 3)) for _ in range(5)), total=10)
        print("rows", len(out))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "rows 10" in run.stdout
    assert "Caching" in run.stderr


# Per-sequence features ------------------------------------------------------------------


def _frames(tmp_path, f=5, hw=(96, 128), seed=0):
    rng = np.random.default_rng(seed)
    folder = tmp_path / "rgb"
    folder.mkdir()
    paths, images = [], []
    for i in range(f):
        small = rng.integers(0, 256, (hw[0] // 8, hw[1] // 8, 3), dtype=np.uint8)
        image = cv2.resize(small, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)
        path = folder / f"{i:06d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        paths.append(path)
        images.append(image)
    x0 = rng.uniform(0, 80, (f, 2))
    y0 = rng.uniform(0, 50, (f, 2))
    bbox = np.stack([x0, y0, x0 + rng.uniform(10, 40, (f, 2)), y0 + rng.uniform(10, 40, (f, 2))], -1).astype(np.float32)
    valid = np.ones((f, 2), bool)
    valid[1, 0] = False
    bbox[1, 0] = np.nan  # invalid hands may carry any box
    return paths, np.stack(images), bbox, valid


def _expected_crops(images, bbox, out_hw, normalize):
    f = len(images)
    flat = torch.from_numpy(np.nan_to_num(bbox)).reshape(f * 2, 4)
    centre, size = crop_params(flat)
    imgs = torch.from_numpy(images).repeat_interleave(2, 0)
    flip = torch.tensor([True, False]).repeat(f)
    crops = crop_hands(imgs, centre, size, flip, out_hw, normalize=normalize)
    return crops.reshape(f, 2, *crops.shape[1:])


def test_sequence_tokens_are_cached_as_float16(tmp_path):
    paths, images, bbox, valid = _frames(tmp_path)
    torch.manual_seed(0)
    vit = HamerViT(ViTConfig(img_hw=(64, 48), depth=2, embed_dim=64, num_heads=4))
    calls = []
    vit.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    cache = _cache(tmp_path)
    tokens = hand_features_for_sequence(paths, bbox, valid, vit, cache, batch_frames=2)
    assert tokens.dtype == np.float16 and tokens.shape == (5, 2, 12, 64)
    assert sum(calls) == 9  # the invalid hand is never run
    expected = vit(_expected_crops(images, bbox, (64, 48), normalize=True).reshape(10, 3, 64, 48)).reshape(5, 2, 12, 64)
    expected[1, 0] = 0
    np.testing.assert_allclose(tokens.astype(np.float32), expected.numpy(), atol=1e-2, rtol=1e-3)
    assert (tokens[1, 0] == 0).all()

    calls.clear()
    again = hand_features_for_sequence(paths, bbox, valid, vit, cache, batch_frames=2)
    assert not calls, "a valid cache must not run the backbone again"
    np.testing.assert_array_equal(again, tokens)
    os.utime(paths[3], ns=(10**18, 10**18))  # a frame changed on disk
    hand_features_for_sequence(paths, bbox, valid, vit, cache, batch_frames=2)
    assert sum(calls) == 9


def test_sequence_crops_are_cached_as_uint8_for_a_trainable_backbone(tmp_path):
    paths, images, bbox, valid = _frames(tmp_path, seed=1)
    cnn = SmallCNN()
    crops = hand_features_for_sequence(paths, bbox, valid, cnn, _cache(tmp_path), batch_frames=3)
    assert crops.dtype == np.uint8 and crops.shape == (5, 2, 3, 64, 48)
    expected = crops_to_uint8(_expected_crops(images, bbox, (64, 48), normalize=False))
    expected[1, 0] = 0
    assert np.abs(crops.astype(int) - expected.numpy().astype(int)).max() <= 1
    # Slot 0 (left) is mirrored: cropping the mirrored frame unmirrored gives the same pixels.
    mirrored = images[:, :, ::-1].copy()
    box = bbox[0, 0].copy()
    box[[0, 2]] = images.shape[2] - box[[2, 0]]
    centre, size = crop_params(torch.from_numpy(box)[None])
    plain = crop_hands(torch.from_numpy(mirrored[:1]), centre, size, torch.tensor([False]), (64, 48), normalize=False)
    assert np.abs(crops[0, 0].astype(int) - crops_to_uint8(plain)[0].numpy().astype(int)).max() <= 1


def test_sequence_input_errors(tmp_path):
    paths, _, bbox, valid = _frames(tmp_path)
    cnn, cache = SmallCNN(), _cache(tmp_path)
    bad = bbox.copy()
    bad[2, 1] = [50, 50, 40, 60]
    with pytest.raises(Hand4DGSError, match="right hand box of frame 2") as err:
        hand_features_for_sequence(paths, bad, valid, cnn, cache)
    assert str(err.value).startswith(f"{tmp_path / 'rgb'}: "), "the sentence names where the boxes belong"
    paths[4].write_bytes(b"not an image")
    with pytest.raises(Hand4DGSError, match="000004.png is not a readable image"):
        hand_features_for_sequence(paths, bbox, valid, cnn, cache)
    assert not list(cache.root.glob("*.json")), "a failed build must not leave an entry"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sequence_tokens_on_cuda_match_cpu(tmp_path):
    paths, _, bbox, valid = _frames(tmp_path)
    torch.manual_seed(0)
    vit = HamerViT(ViTConfig(img_hw=(64, 48), depth=2, embed_dim=64, num_heads=4), bf16=False)
    cpu = np.array(hand_features_for_sequence(paths, bbox, valid, vit, FeatureCache(tmp_path / "cpu"), batch_frames=2))
    gpu = np.array(hand_features_for_sequence(paths, bbox, valid, vit.cuda(), FeatureCache(tmp_path / "gpu"), batch_frames=2))
    np.testing.assert_allclose(gpu.astype(np.float32), cpu.astype(np.float32), atol=2e-2, rtol=1e-2)


def test_videos_sharing_a_cache_folder_keep_their_own_entries(tmp_path):
    """Many videos in one cache (a generalised run, ``infer`` on a folder of videos): each video
    has an entry of its own, so a second pass over them rebuilds nothing."""
    videos = []
    for i in range(2):
        (tmp_path / f"video_{i}").mkdir()
        videos.append(_frames(tmp_path / f"video_{i}", seed=i))
    cnn, cache = SmallCNN(), _cache(tmp_path)
    first = [np.array(hand_features_for_sequence(p, b, v, cnn, cache, batch_frames=3)) for p, _, b, v in videos]
    assert not np.array_equal(first[0], first[1])
    stamps = sorted(path.stat().st_mtime_ns for path in (tmp_path / "cache").rglob("*.npy"))
    assert len(stamps) == 2
    again = [hand_features_for_sequence(p, b, v, cnn, cache, batch_frames=3) for p, _, b, v in videos]
    for before, after in zip(first, again):
        np.testing.assert_array_equal(before, after)
    assert sorted(path.stat().st_mtime_ns for path in (tmp_path / "cache").rglob("*.npy")) == stamps
    assert "Rebuilding" not in cache.console.file.getvalue()


def test_leftovers_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    import subprocess
    import sys

    from hand4dgs_ns.output_folder import atomic_folder

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    alive = str(os.getppid())
    hour_ago = time.time() - 3700
    (tmp_path / f".clip.partial-{dead}").mkdir()  # a killed `hand4dgs synth` / infer / export
    (tmp_path / f".clip.partial-{dead}" / "frame.png").write_bytes(b"x")
    os.utime(tmp_path / f".clip.partial-{dead}", (hour_ago, hour_ago))
    (tmp_path / f".clip.partial-{alive}").mkdir()  # another process still writing
    os.utime(tmp_path / f".clip.partial-{alive}", (hour_ago, hour_ago))
    recent = tmp_path / ".clip.partial-999999999"  # maybe another machine's writer: too recent to remove
    recent.mkdir()
    with atomic_folder(tmp_path / "clip") as out:
        (out / "done.txt").write_text("ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f".clip.partial-{alive}", recent.name, "clip"])

    cache = _cache(tmp_path)
    entry = tmp_path / "cache" / "video-x"
    entry.mkdir(parents=True)
    stale = entry / f".crops-64x48.npy.{dead}.tmp"  # a killed cache build
    stale.write_bytes(b"half")
    os.utime(stale, (hour_ago, hour_ago))
    live = entry / f".crops-64x48.npy.{alive}.tmp"
    live.write_bytes(b"half")
    os.utime(live, (hour_ago, hour_ago))
    cache.get_or_build(KEY, Builder(_data()), total=7, name="video-x/crops-64x48")
    assert not stale.exists() and live.exists()


def test_decoded_frames_and_masks_are_cached_memory_maps(tmp_path):
    from PIL import Image

    from conftest import write_random_sequence
    from hand4dgs_ns.data.sequence_format import read_sequence
    from hand4dgs_ns.features.frame_cache import decoded_video

    root = write_random_sequence(tmp_path / "clip", num_frames=5, width=64, height=48)
    sequence = read_sequence(root)
    cache = FeatureCache(tmp_path / "cache")
    images, masks = decoded_video(sequence.image_paths, sequence.mask_paths, (32, 24), cache)
    assert isinstance(images, np.memmap) and isinstance(masks, np.memmap)
    assert images.shape == (5, 24, 32, 3) and masks.shape == (5, 24, 32)
    with Image.open(sequence.image_paths[3]) as im:
        expected = np.asarray(im.convert("RGB").resize((32, 24), Image.Resampling.BOX))
    np.testing.assert_array_equal(images[3], expected)
    with Image.open(sequence.mask_paths[3]) as im:
        labels = np.asarray(im.resize((32, 24), Image.Resampling.NEAREST))
    np.testing.assert_array_equal(masks[3], labels)
    built = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.npy")}
    assert len(built) == 2
    again = decoded_video(sequence.image_paths, sequence.mask_paths, (32, 24), cache)  # reused, not rebuilt
    np.testing.assert_array_equal(again[0], images)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.npy")} == built


def test_many_videos_build_on_threads_behind_one_bar(tmp_path):
    """A set's entries are built several videos at a time: the same arrays as one at a time,
    in the videos' order, one bar counted in videos, and none once every entry is valid."""
    from hand4dgs_ns.features.build_pool import map_videos

    videos = []
    for i in range(4):
        (tmp_path / f"video_{i}").mkdir()
        videos.append(_frames(tmp_path / f"video_{i}", seed=i))
    cnn = SmallCNN()

    def crops(cache):
        return lambda video: np.array(hand_features_for_sequence(video[0], video[2], video[3], cnn, cache, batch_frames=2))

    alone = _cache(tmp_path / "alone")
    expected = [crops(alone)(video) for video in videos]
    shared = _cache(tmp_path / "threads")
    got = map_videos(crops(shared), videos, shared, "Caching hand crops", workers=3)
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)
    log = shared.console.file.getvalue()
    assert "Caching hand crops" in log and "4/4" in log and "Caching video_" not in log
    assert shared.shared_bar is None
    quiet = _cache(tmp_path / "threads")
    map_videos(crops(quiet), videos, quiet, "Caching hand crops", workers=3)
    assert quiet.console.file.getvalue() == ""


def test_a_failing_video_stops_the_pool_with_its_error(tmp_path):
    from hand4dgs_ns.features.build_pool import map_videos

    started = []

    def build(i):
        started.append(i)
        if i == 0:
            raise Hand4DGSError("Frame 0 of video 0 cannot be read: restore it.")
        time.sleep(0.2)
        return i

    cache = _cache(tmp_path)
    with pytest.raises(Hand4DGSError, match="video 0"):
        map_videos(build, list(range(40)), cache, "Caching", workers=2)
    assert len(started) < 40 and cache.shared_bar is None


def test_threads_asking_for_one_entry_build_it_once(tmp_path):
    """Two threads after the same entry (a video listed twice) wait for one build, not race on it."""
    from hand4dgs_ns.features.build_pool import map_videos

    cache, build = _cache(tmp_path), Builder(_data())
    arrays = map_videos(lambda _: np.array(cache.get_or_build(KEY, build, total=7)), [0, 1, 2], cache, "Caching", workers=3)
    assert build.calls == 1
    for array in arrays:
        np.testing.assert_array_equal(array, _data())


def test_processes_asking_for_one_entry_build_it_once(tmp_path):
    """Two runs started together on the same data (two ns-train commands) share the cache folder:
    the second waits for the first's build and loads it, instead of removing its files mid-build."""
    script = textwrap.dedent(
        f"""
        import io, sys, time
        import numpy as np
        from rich.console import Console
        from hand4dgs_ns.features.cache import CacheKey, FeatureCache

        key = CacheKey(**{dataclasses.asdict(KEY)!r})
        data = np.random.default_rng(0).standard_normal((7, 2, 12, 64)).astype(np.float16)

        def build():
            with open(sys.argv[1], "a") as log:
                log.write("build\\n")
            for start in range(0, 7, 2):
                time.sleep(0.3)  # slow enough for the other process to arrive mid-build
                yield data[start : start + 2]

        cache = FeatureCache(sys.argv[2], console=Console(file=io.StringIO()))
        array = cache.get_or_build(key, build, total=7, name="video-x/tokens")
        assert np.array_equal(array, data)
        """
    )
    log = tmp_path / "builds.txt"
    runs = [subprocess.Popen([sys.executable, "-c", script, str(log), str(tmp_path / "cache")], stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [run.communicate(timeout=120)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], errors
    assert log.read_text().count("build") == 1


@pytest.mark.parametrize("error", [PermissionError(13, "Permission denied"), OSError(30, "Read-only file system")])
def test_a_cache_where_no_lock_file_can_be_made_still_serves_its_entries(tmp_path, monkeypatch, error):
    """A read-only shared cache: the lock file cannot be opened (filelock opens it for writing,
    even one that exists), and valid entries load as before."""
    from filelock import FileLock

    cache, build = _cache(tmp_path), Builder(_data())
    cache.get_or_build(KEY, build, total=7)

    def refuse(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(FileLock, "acquire", refuse)
    np.testing.assert_array_equal(cache.get_or_build(KEY, build, total=7), _data())
    assert build.calls == 1
