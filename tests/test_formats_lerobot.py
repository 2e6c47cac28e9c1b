"""LeRobot v3 datasets: imitate's writer read back by imitate's source (low-dim values exact, video
within the codec's loss, PSNR reported), a dataset written directly with pyarrow + PyAV following
LeRobot's layout, LeRobot's own LeRobotDataset where it imports, malformed datasets refused with
messages naming path, episode and key, and robomimic HDF5 -> LeRobot -> robomimic HDF5."""
from __future__ import annotations

import json
import shutil
from fractions import Fraction

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install 'imitate-policies[formats]')")
pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed (pip install 'imitate-policies[formats]')")
av = pytest.importorskip("av", reason="PyAV (av) is not installed (pip install 'imitate-policies[formats]')")

from imitate.data import Episode, load_demo_file, make_env_args, write_demo_file  # noqa: E402
from imitate.data.lerobot import LeRobotSource
from imitate.data.lerobot_writer import write_lerobot_dataset  # noqa: E402
from imitate.data.video import VideoReader, pick_encoder, psnr  # noqa: E402
from imitate.errors import DemoFileError, ImitateError  # noqa: E402

#: Lowest PSNR (dB) accepted for frames that went through a video codec (yuv420p, default quality).
MIN_PSNR = 30.0


def frames(rng, n: int, size: int = 96) -> np.ndarray:
    """(n, size, size, 3) uint8: a lit floor with a gradient and a disc that moves (a camera-like scene)."""
    yy, xx = np.mgrid[0:size, 0:size]
    base = np.stack([60 + xx, 80 + yy // 2, 120 + 0 * xx], -1).clip(0, 255)
    out = np.empty((n, size, size, 3), np.uint8)
    c = rng.uniform(size // 5, size - size // 5, size=2)
    v = rng.uniform(-2, 2, size=2)
    for t in range(n):
        cy, cx = (c + v * t) % size
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < 64
        out[t] = np.where(disc[..., None], (220, 40, 40), base)
    return out


def episode(rng, n: int, name: str, image: bool = True, size: int = 96) -> Episode:
    obs = {"state": rng.normal(size=(n + 1, 5)).astype(np.float32),
           "gripper": rng.normal(size=(n + 1, 2))}  # float64 stays float64
    if image:
        obs["agentview_image"] = frames(rng, n + 1, size)
    return Episode(obs={k: v[:-1] for k, v in obs.items()}, next_obs={k: v[1:] for k, v in obs.items()},
                   actions=rng.uniform(-1, 1, size=(n, 7)).astype(np.float32),
                   rewards=rng.normal(size=n).astype(np.float32), dones=np.r_[np.zeros(n - 1), 1].astype(np.uint8),
                   attrs={"is_success": bool(n % 2)}, name=name)


@pytest.fixture
def eps():
    rng = np.random.default_rng(0)
    return [episode(rng, n, f"demo_{i}") for i, n in enumerate([20, 7, 33, 12])]


@pytest.fixture
def dataset(tmp_path, eps):
    return write_lerobot_dataset(tmp_path / "ds", eps, make_env_args("imitate/ForkedPath-v0", {"x": 1}), fps=10,
                                 filter_keys={"train": ["demo_0", "demo_2"], "valid": ["demo_1"]})


def assert_same(written: list[Episode], read: list[Episode], image_keys=("agentview_image",)) -> list[float]:
    """Low-dim values bit-identical (dtype too), images within MIN_PSNR; returns the PSNR of each image key."""
    assert len(read) == len(written)
    values = []
    for a, b in zip(written, read):
        assert set(b.obs) == set(a.obs)
        for k in a.obs:
            for x, y in ((a.obs[k], b.obs[k]), (a.next_obs[k], b.next_obs[k])):
                assert y.shape == x.shape and y.dtype == x.dtype, k
                if k in image_keys:
                    values.append(psnr(x, y))
                    assert values[-1] >= MIN_PSNR, (b.name, k, values[-1])
                else:
                    assert np.array_equal(x, y), (b.name, k)
        for k in ("actions", "rewards", "dones"):
            x, y = getattr(a, k), getattr(b, k)
            assert y.dtype == x.dtype and np.array_equal(x, y), (b.name, k)
    return values


# -- imitate's writer, read back -----------------------------------------------------------------
def test_written_dataset_reads_back(dataset, eps, record_property):
    root = dataset
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_episodes"] == 4 and info["total_frames"] == 72
    assert info["features"]["observation.images.agentview"]["dtype"] == "video"
    assert info["features"]["observation.images.agentview"]["shape"] == [96, 96, 3]
    assert info["features"]["observation.state"] == {"dtype": "float32", "shape": [5], "names": None}
    assert (root / "videos/observation.images.agentview/chunk-000/file-000.mp4").is_file()
    assert not list(root.parent.glob(".ds.*"))  # the temporary folder is gone
    stats = json.loads((root / "meta/stats.json").read_text())
    state = np.concatenate([e.obs["state"] for e in eps])
    np.testing.assert_allclose(stats["observation.state"]["mean"], state.mean(0), rtol=1e-5, atol=1e-6)
    assert np.array(stats["observation.images.agentview"]["mean"]).shape == (3, 1, 1)

    source = LeRobotSource(root)
    assert source.format == "lerobot-v3" and source.n_episodes == 4 and source.lengths == [20, 7, 33, 12]
    assert source.obs_features == {"state": "observation.state", "gripper": "observation.gripper",
                                   "agentview_image": "observation.images.agentview"}
    assert source.env_args == make_env_args("imitate/ForkedPath-v0", {"x": 1})
    assert source.filter_keys == {"train": ["demo_0", "demo_2"], "valid": ["demo_1"]}
    assert not source.next_obs_derived and not any("flagged" in n for n in source.notes)
    read = list(source.episodes())
    assert [e.name for e in read] == ["demo_0", "demo_1", "demo_2", "demo_3"]
    assert all(e.source == str(root) for e in read)
    assert [e.attrs for e in read] == [e.attrs for e in eps]
    values = assert_same(eps, read)
    record_property("psnr_h264_min", min(values))
    print(f"H.264 PSNR over {len(values)} episode arrays: min {min(values):.1f} dB, mean {np.mean(values):.1f} dB")


def test_obs_keys_select_and_unknown_key_is_named(dataset):
    source = LeRobotSource(dataset, obs_keys=["state"])
    ep = next(source.episodes())
    assert set(ep.obs) == {"state"}
    with pytest.raises(DemoFileError, match=r"no observation key \['camera'\].*agentview_image"):
        LeRobotSource(dataset, obs_keys=["camera"])


def test_imitate_metadata_naming_unknown_demos(dataset):
    meta = json.loads((dataset / "meta/imitate.json").read_text())
    meta["filter_keys"]["valid"] = ["demo_9"]
    (dataset / "meta/imitate.json").write_text(json.dumps(meta))
    with pytest.raises(DemoFileError, match=r"imitate.json: filter key 'valid' names demos the dataset does not have: "
                                            r"\['demo_9'\]"):
        LeRobotSource(dataset)


def test_av1_reads_back(tmp_path, eps, record_property):
    try:
        pick_encoder("av1")
    except ImitateError as e:
        pytest.skip(f"no AV1 encoder in this PyAV build: {e}")
    root = write_lerobot_dataset(tmp_path / "av1", eps[:2], None, fps=10, video_codec="av1")
    info = json.loads((root / "meta/info.json").read_text())
    assert info["features"]["observation.images.agentview"]["info"]["video.codec"] == "av1"
    values = assert_same(eps[:2], list(LeRobotSource(root).episodes()))
    record_property("psnr_av1_min", min(values))
    print(f"AV1 PSNR: min {min(values):.1f} dB")


@pytest.mark.parametrize("shape", [(32, 32, 1), (33, 35, 3), (33, 35, 1)])
def test_grey_and_odd_sized_frames(tmp_path, shape):
    """One-channel frames and odd sizes (yuv444p) read back within the codec's loss, shape kept."""
    rng = np.random.default_rng(4)
    written = []
    for i, n in enumerate([12, 7]):
        images = frames(rng, n + 1, 40)[:, :shape[0], :shape[1], :shape[2]]
        state = rng.normal(size=(n + 1, 2)).astype(np.float32)
        written.append(Episode(obs={"cam_image": images[:-1], "s": state[:-1]},
                               next_obs={"cam_image": images[1:], "s": state[1:]}, actions=np.zeros((n, 1), np.float32),
                               rewards=np.zeros(n), dones=np.zeros(n), name=f"demo_{i}"))
    root = write_lerobot_dataset(tmp_path / "g", written, None)
    assert json.loads((root / "meta/info.json").read_text())["features"]["observation.images.cam"]["shape"] == list(shape)
    assert_same(written, list(LeRobotSource(root).episodes()), image_keys=("cam_image",))


def test_av1_refuses_odd_sizes_by_name(tmp_path, eps):
    try:
        encoder = pick_encoder("av1")
    except ImitateError as e:
        pytest.skip(f"no AV1 encoder in this PyAV build: {e}")
    if encoder != "libsvtav1":
        pytest.skip(f"the AV1 encoder here is {encoder}, which takes odd sizes")
    odd = Episode(obs={"cam_image": np.zeros((3, 33, 35, 3), np.uint8)}, next_obs={"cam_image": np.zeros((3, 33, 35, 3), np.uint8)},
                  actions=np.zeros((3, 1)), rewards=np.zeros(3), dones=np.zeros(3), name="demo_0")
    with pytest.raises(ImitateError, match=r"libsvtav1\) takes only even frame sizes; 35x33 frames need video_codec h264"):
        write_lerobot_dataset(tmp_path / "odd", [odd], None, video_codec="av1")
    assert not (tmp_path / "odd").exists()


def test_several_data_and_video_files(tmp_path, eps):
    """A small file-size limit spreads the episodes over several data and video files."""
    root = write_lerobot_dataset(tmp_path / "many", eps, None, fps=10, data_file_mb=0.0005)
    assert len(list((root / "data/chunk-000").glob("file-*.parquet"))) == 4
    assert len(list((root / "videos/observation.images.agentview/chunk-000").glob("*.mp4"))) == 4
    assert_same(eps, list(LeRobotSource(root).episodes()))


def test_writer_is_atomic_and_refuses_an_existing_folder(tmp_path, eps, dataset):
    with pytest.raises(ImitateError, match="already exists"):
        write_lerobot_dataset(dataset, eps, None)

    def failing():
        yield eps[0]
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError):
        write_lerobot_dataset(tmp_path / "half", failing(), None)
    assert not (tmp_path / "half").exists() and not list(tmp_path.glob(".half.*"))


def test_fps_defaults_to_the_control_rate_of_env_args(tmp_path):
    rng = np.random.default_rng(3)
    eps = [episode(rng, 5, "demo_0", image=False)]
    root = write_lerobot_dataset(tmp_path / "a", eps, make_env_args("Lift", {"control_freq": 20}))
    assert json.loads((root / "meta/info.json").read_text())["fps"] == 20
    root = write_lerobot_dataset(tmp_path / "b", eps, None)
    info = json.loads((root / "meta/info.json").read_text())
    assert info["fps"] == 10 and info["video_path"] is None
    root = write_lerobot_dataset(tmp_path / "c", eps, None, fps=30.0)
    assert json.loads((root / "meta/info.json").read_text())["fps"] == 30  # an integer, as LeRobot writes it
    assert isinstance(json.loads((root / "meta/info.json").read_text())["fps"], int)
    assert_same(eps, list(LeRobotSource(root).episodes()))


def test_without_final_observation_next_obs_is_derived_and_flagged(tmp_path, eps):
    root = write_lerobot_dataset(tmp_path / "nofinal", eps[:2], None, final_observation=False)
    source = LeRobotSource(root)
    assert source.next_obs_derived and any(n.startswith("next_obs:") and "flagged" in n for n in source.notes)
    for a, b in zip(eps[:2], source.episodes()):
        assert np.array_equal(b.obs["state"], a.obs["state"])
        assert np.array_equal(b.next_obs["state"][:-1], a.next_obs["state"][:-1])
        assert np.array_equal(b.next_obs["state"][-1], a.obs["state"][-1])  # the flagged repeat
        assert b.obs["agentview_image"].shape == a.obs["agentview_image"].shape


def test_writer_refuses_next_obs_that_is_not_the_next_obs(tmp_path):
    rng = np.random.default_rng(1)
    ep = episode(rng, 6, "demo_0", image=False)
    bad = dict(ep.next_obs, state=ep.next_obs["state"] + 1)
    ep = Episode(obs=ep.obs, next_obs=bad, actions=ep.actions, rewards=ep.rewards, dones=ep.dones, name="demo_0")
    with pytest.raises(ImitateError, match=r"demo_0 .*next_obs/state at step 0 is not obs/state at step 1"):
        write_lerobot_dataset(tmp_path / "x", [ep], None)
    assert not (tmp_path / "x").exists()


# -- a dataset written with pyarrow + PyAV, following LeRobot's v3 layout ------------------------
FPS = 15


def _encode(path, images, fps=FPS):
    """An mp4 as FFmpeg/LeRobot write them: libx264 yuv420p, time base 1/15360 (frame n at n / fps)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps, options={"g": "2", "crf": "18"})
        s.width, s.height, s.pix_fmt = images.shape[2], images.shape[1], "yuv420p"
        s.time_base = Fraction(1, 15360)
        for i, im in enumerate(images):
            f = av.VideoFrame.from_ndarray(im, format="rgb24")
            f.pts = i * 15360 // fps
            f.time_base = Fraction(1, 15360)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def make_v3(root, lengths=(10, 6, 14, 8), per_file=2, version="v3.0", state_type=None):
    """A LeRobot v3 dataset written by hand: episodes ``per_file`` to a data file and to a video file,
    a 2-frame gap between episodes inside a video, float32 state, float32 action, no rewards/dones."""
    rng = np.random.default_rng(5)
    E = len(lengths)
    truth = {"state": [], "action": [], "image": []}
    ep_rows = []
    index = 0
    for file in range((E + per_file - 1) // per_file):
        members = range(file * per_file, min(E, (file + 1) * per_file))
        cols = {k: [] for k in ("timestamp", "frame_index", "episode_index", "index", "task_index",
                                "observation.state", "action")}
        video, t0 = [], 0
        for e in members:
            n = lengths[e]
            state = rng.normal(size=(n, 4)).astype(np.float32)
            action = rng.normal(size=(n, 2)).astype(np.float32)
            images = frames(rng, n, 64)
            truth["state"].append(state)
            truth["action"].append(action)
            truth["image"].append(images)
            cols["timestamp"] += list((np.arange(n) / FPS).astype(np.float32))
            cols["frame_index"] += list(range(n))
            cols["episode_index"] += [e] * n
            cols["index"] += list(range(index, index + n))
            cols["task_index"] += [e % 2] * n
            cols["observation.state"] += list(state)
            cols["action"] += list(action)
            ep_rows.append({"episode_index": e, "tasks": [f"task {e % 2}"], "length": n,
                            "data/chunk_index": 0, "data/file_index": file,
                            "dataset_from_index": index, "dataset_to_index": index + n,
                            "videos/observation.images.front/chunk_index": 0,
                            "videos/observation.images.front/file_index": file,
                            "videos/observation.images.front/from_timestamp": t0 / FPS,
                            "videos/observation.images.front/to_timestamp": (t0 + n) / FPS,
                            "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
            video.append(images)
            video.append(np.zeros((2, 64, 64, 3), np.uint8))  # frames outside every episode's range
            t0 += n + 2
            index += n
        table = pa.table({
            "timestamp": pa.array(cols["timestamp"], pa.float32()),
            "frame_index": pa.array(cols["frame_index"], pa.int64()),
            "episode_index": pa.array(cols["episode_index"], pa.int64()),
            "index": pa.array(cols["index"], pa.int64()),
            "task_index": pa.array(cols["task_index"], pa.int64()),
            "observation.state": (pa.array([str(list(s)) for s in cols["observation.state"]]) if state_type == "string"
                                  else pa.array([list(s) for s in cols["observation.state"]], pa.list_(pa.float32(), 4))),
            "action": pa.array([list(a) for a in cols["action"]], pa.list_(pa.float32())),
        })
        path = root / f"data/chunk-000/file-{file:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        _encode(root / f"videos/observation.images.front/chunk-000/file-{file:03d}.mp4", np.concatenate(video))
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(ep_rows), root / "meta/episodes/chunk-000/file-000.parquet")
    pq.write_table(pa.table({"task_index": [0, 1], "task": ["task 0", "task 1"]}), root / "meta/tasks.parquet")
    info = {"codebase_version": version, "robot_type": "test", "total_episodes": E, "total_frames": int(sum(lengths)),
            "total_tasks": 2, "chunks_size": 1000, "fps": FPS, "splits": {"train": f"0:{E}"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": {
                "observation.state": {"dtype": "float32", "shape": [4], "names": ["a", "b", "c", "d"]},
                "observation.images.front": {"dtype": "video", "shape": [64, 64, 3],
                                             "names": ["height", "width", "channels"]},
                "action": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
                "timestamp": {"dtype": "float32", "shape": [1], "names": None},
                "frame_index": {"dtype": "int64", "shape": [1], "names": None},
                "episode_index": {"dtype": "int64", "shape": [1], "names": None},
                "index": {"dtype": "int64", "shape": [1], "names": None},
                "task_index": {"dtype": "int64", "shape": [1], "names": None}}}
    (root / "meta/info.json").write_text(json.dumps(info))
    return root, truth


def test_dataset_written_by_pyarrow_and_pyav(tmp_path, record_property):
    root, truth = make_v3(tmp_path / "hand")
    source = LeRobotSource(root)
    assert source.n_episodes == 4 and source.lengths == [10, 6, 14, 8] and source.env_args is None
    assert source.obs_features == {"state": "observation.state", "front_image": "observation.images.front"}
    assert source.next_obs_derived
    assert any(n.startswith("rewards:") and "flagged" in n for n in source.notes)
    assert any(n.startswith("dones:") and "flagged" in n for n in source.notes)
    assert any(n.startswith("next_obs:") and "flagged" in n for n in source.notes)
    values = []
    for i, ep in enumerate(source.episodes()):
        assert ep.name == f"demo_{i}" and ep.attrs == {"task": f"task {i % 2}"}
        assert ep.obs["state"].dtype == np.float32 and np.array_equal(ep.obs["state"], truth["state"][i])
        assert np.array_equal(ep.actions, truth["action"][i])
        assert np.array_equal(ep.next_obs["state"][:-1], truth["state"][i][1:])
        assert np.array_equal(ep.next_obs["state"][-1], truth["state"][i][-1])  # the flagged repeat
        assert not ep.rewards.any() and not ep.dones.any()
        assert ep.obs["front_image"].shape == (len(ep), 64, 64, 3) and ep.obs["front_image"].dtype == np.uint8
        values.append(psnr(ep.obs["front_image"], truth["image"][i]))
        assert values[-1] >= MIN_PSNR
    record_property("psnr_hand_min", min(values))
    print(f"hand-written v3 dataset: PSNR min {min(values):.1f} dB")


def test_lerobot_dataset_reads_imitates_writer(dataset, eps):
    """LeRobot's own reader on a dataset imitate wrote (needs lerobot, which needs torchvision)."""
    try:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
    except ImportError as e:
        pytest.skip(f"LeRobot's LeRobotDataset cannot be imported here ({type(e).__name__}: {e}); installing "
                    f"lerobot would replace this torch by a CUDA build with torchvision, so it is not in the dev "
                    f"environment; the pyarrow + PyAV layout test stands in for it")
    ds = LeRobotDataset("local/imitate", root=dataset)
    assert ds.num_episodes == len(eps) and ds.num_frames == sum(len(e) for e in eps)
    item = ds[len(eps[0]) + 3]  # episode 1, frame 3
    np.testing.assert_array_equal(item["observation.state"].numpy(), eps[1].obs["state"][3])
    np.testing.assert_array_equal(item["action"].numpy(), eps[1].actions[3])
    image = (item["observation.images.agentview"].numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)
    assert psnr(image, eps[1].obs["agentview_image"][3]) >= MIN_PSNR


def test_a_missing_package_names_the_extra(dataset, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImitateError, match=r"need pyarrow, which is not installed.*imitate-policies\[formats\]"):
        LeRobotSource(dataset)
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ImitateError, match=r"needs PyAV.*imitate-policies\[formats\]"):
        VideoReader(dataset / "videos/observation.images.agentview/chunk-000/file-000.mp4")


# -- malformed datasets: the message names path, episode and key ----------------------------------
def test_missing_info_json(tmp_path):
    root, _ = make_v3(tmp_path / "d")
    (root / "meta/info.json").unlink()
    with pytest.raises(DemoFileError, match=r"d: not a LeRobot dataset: missing meta/info.json"):
        LeRobotSource(root)


def test_other_versions_are_refused_naming_the_version(tmp_path):
    root, _ = make_v3(tmp_path / "d", version="v1.6")
    with pytest.raises(DemoFileError, match=r"info.json: LeRobot dataset version v1.6 found; imitate reads LeRobot v3.x and v2.x"):
        LeRobotSource(root)


def make_v2(root, lengths=(9, 5, 12)):
    """A LeRobot v2.1 dataset written by hand: one parquet and one mp4 per episode, meta/episodes.jsonl."""
    rng = np.random.default_rng(7)
    truth = {"state": [], "action": [], "image": []}
    index = 0
    for e, n in enumerate(lengths):
        state, action, images = (rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, 2)).astype(np.float32),
                                 frames(rng, n, 64))
        for k, v in zip(("state", "action", "image"), (state, action, images)):
            truth[k].append(v)
        path = root / f"data/chunk-000/episode_{e:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({
            "observation.state": pa.array(list(state), pa.list_(pa.float32(), 3)),
            "action": pa.array(list(action), pa.list_(pa.float32(), 2)),
            "next.reward": pa.array(np.arange(n, dtype=np.float32)),
            "timestamp": pa.array((np.arange(n) / FPS).astype(np.float32)),
            "frame_index": pa.array(np.arange(n)), "episode_index": pa.array(np.full(n, e)),
            "index": pa.array(np.arange(index, index + n)), "task_index": pa.array(np.zeros(n, np.int64))}), path)
        _encode(root / f"videos/chunk-000/observation.images.top/episode_{e:06d}.mp4", images)
        index += n
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta/episodes.jsonl").write_text("".join(
        json.dumps({"episode_index": e, "tasks": ["push"], "length": n}) + "\n" for e, n in enumerate(lengths)))
    info = {"codebase_version": "v2.1", "fps": FPS, "total_episodes": len(lengths), "total_frames": index,
            "chunks_size": 1000, "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
            "features": {"observation.state": {"dtype": "float32", "shape": [3], "names": None},
                         "observation.images.top": {"dtype": "video", "shape": [64, 64, 3],
                                                    "names": ["height", "width", "channels"]},
                         "action": {"dtype": "float32", "shape": [2], "names": None},
                         "next.reward": {"dtype": "float32", "shape": [1], "names": None}}}
    (root / "meta/info.json").write_text(json.dumps(info))
    return root, truth


def test_version_2_dataset_reads(tmp_path):
    root, truth = make_v2(tmp_path / "v2")
    source = LeRobotSource(root)
    assert source.format == "lerobot-v2" and source.lengths == [9, 5, 12]
    assert not any(n.startswith("rewards:") for n in source.notes)
    for i, ep in enumerate(source.episodes()):
        assert np.array_equal(ep.obs["state"], truth["state"][i]) and np.array_equal(ep.actions, truth["action"][i])
        assert np.array_equal(ep.rewards, np.arange(len(ep), dtype=np.float32)) and ep.attrs == {"task": "push"}
        assert psnr(ep.obs["top_image"], truth["image"][i]) >= MIN_PSNR


def test_episode_index_out_of_range(tmp_path):
    root, _ = make_v3(tmp_path / "d")
    path = root / "meta/episodes/chunk-000/file-000.parquet"
    t = pq.read_table(path)
    pq.write_table(t.set_column(0, "episode_index", pa.array([0, 1, 2, 7], pa.int64())), path)
    with pytest.raises(DemoFileError, match=r"meta/episodes: episode_index 7 is out of range.*total_episodes 4"):
        LeRobotSource(root)


def test_data_rows_of_an_episode_out_of_range(tmp_path):
    root, _ = make_v3(tmp_path / "d")
    path = root / "data/chunk-000/file-001.parquet"
    t = pq.read_table(path)
    ep = t.column("episode_index").to_numpy().copy()
    ep[-1] = 9
    pq.write_table(t.set_column(t.column_names.index("episode_index"), "episode_index", pa.array(ep)), path)
    source = LeRobotSource(root)
    with pytest.raises(DemoFileError, match=r"file-001.parquet: rows of episode_index 9, out of range.*4 episodes"):
        list(source.episodes())


def test_video_shorter_than_its_episode(tmp_path):
    root, truth = make_v3(tmp_path / "d", per_file=4)
    video = root / "videos/observation.images.front/chunk-000/file-000.mp4"
    # the last episode (8 frames, from frame 36) gets 5: the file ends inside it
    kept = np.concatenate([np.concatenate([im, np.zeros((2, 64, 64, 3), np.uint8)]) for im in truth["image"][:3]]
                          + [truth["image"][3][:5]])
    video.unlink()
    _encode(video, kept)
    source = LeRobotSource(root)
    got = []
    with pytest.raises(DemoFileError, match=r"demo_3 \(episode 3\) in .*observation.images.front: .*file-000.mp4: "
                                            r"the video ends before .*5 of 8 frames.*shorter than its episode"):
        for ep in source.episodes():
            got.append(ep.name)
    assert got == ["demo_0", "demo_1", "demo_2"]


def test_parquet_column_of_the_wrong_type(tmp_path):
    root, _ = make_v3(tmp_path / "d", state_type="string")
    source = LeRobotSource(root)
    with pytest.raises(DemoFileError, match=r"demo_0 \(episode 0\) in .*file-000.parquet column 'observation.state' "
                                            r"holds string values; meta/info.json declares float32 \[4\]"):
        next(source.episodes())


def test_episode_length_disagreeing_with_its_rows(tmp_path):
    root, _ = make_v3(tmp_path / "d")
    path = root / "meta/episodes/chunk-000/file-000.parquet"
    t = pq.read_table(path)
    i = t.column_names.index("length")
    pq.write_table(t.set_column(i, "length", pa.array([10, 6, 15, 8], pa.int64())), path)
    with pytest.raises(DemoFileError, match=r"episode 2 has length 15 but dataset_from_index .. dataset_to_index spans 14"):
        LeRobotSource(root)


def test_missing_episode_table_and_missing_column(tmp_path):
    root, _ = make_v3(tmp_path / "d")
    path = root / "meta/episodes/chunk-000/file-000.parquet"
    t = pq.read_table(path)
    pq.write_table(t.drop(["videos/observation.images.front/from_timestamp"]), path)
    with pytest.raises(DemoFileError, match=r"file-000.parquet: the episode table lacks the columns "
                                            r"\['videos/observation.images.front/from_timestamp'\]"):
        LeRobotSource(root)
    shutil.rmtree(root / "meta/episodes")
    with pytest.raises(DemoFileError, match=r"missing the episode table meta/episodes"):
        LeRobotSource(root)


def test_video_reader_times(tmp_path):
    images = frames(np.random.default_rng(2), 40, 64)
    path = tmp_path / "v.mp4"
    _encode(path, images)
    with VideoReader(path) as r:
        late = r.read(np.arange(30, 35) / FPS)
        early = r.read(np.arange(2, 6) / FPS)  # seeks back
        assert psnr(late, images[30:35]) >= MIN_PSNR and psnr(early, images[2:6]) >= MIN_PSNR
        assert psnr(late, images[30:35]) > psnr(late, images[31:36]) + 3  # the frames asked for, not neighbours
        with pytest.raises(DemoFileError, match=r"v.mp4: no frame at t=0.4333s"):
            r.read([6.5 / FPS])
    with VideoReader(path) as r:
        every = r.read(np.arange(40) / FPS)  # front to back
    with VideoReader(path) as r:  # windows in random order: each seeks, and gets the same frames
        for t in np.random.default_rng(3).permutation(np.arange(1, 40))[:15]:
            assert np.array_equal(r.read([(t - 1) / FPS, t / FPS]), every[t - 1:t + 1]), t
        for t in range(1, 6):  # overlapping windows one step apart: the shared frame is not decoded again
            assert np.array_equal(r.read([(t - 1) / FPS, t / FPS]), every[t - 1:t + 1]), t
        assert np.array_equal(r.read([5 / FPS]), every[5:6])


# -- robomimic HDF5 -> LeRobot -> robomimic HDF5 ------------------------------------------------
def test_robomimic_lerobot_robomimic_round_trip(tmp_path, eps, record_property):
    env_args = make_env_args("imitate/BlockPush-v0", {"obs_mode": "state+image"})
    src = write_demo_file(tmp_path / "src.hdf5", eps, env_args, valid_fraction=0.25)
    store = load_demo_file(src)
    episodes = [store.episode(i) for i in range(store.n_episodes)]
    lerobot = write_lerobot_dataset(tmp_path / "lerobot", episodes, store.env_args, fps=10,
                                    filter_keys=store.filter_keys)
    source = LeRobotSource(lerobot)
    back = write_demo_file(tmp_path / "back.hdf5", source.episodes(), source.env_args,
                           filter_keys=source.filter_keys, valid_fraction=0)
    a, b = load_demo_file(src), load_demo_file(back)
    assert b.env_args == a.env_args and b.filter_keys == a.filter_keys and b.demo_names == a.demo_names
    assert b.demo_attrs == a.demo_attrs and np.array_equal(b.episode_ends, a.episode_ends)
    assert set(b.keys) == set(a.keys)
    rows = np.arange(len(a))
    for key in a.keys:
        x, y = a.get(key, rows), b.get(key, rows)
        assert x.dtype == y.dtype and x.shape == y.shape, key
        if a.is_image(key) if key.startswith(("obs/", "next_obs/")) else False:
            value = psnr(x, y)
            record_property(f"psnr_{key.replace('/', '_')}", value)
            assert value >= MIN_PSNR, (key, value)
        else:
            assert np.array_equal(x, y), key  # bit-identical
