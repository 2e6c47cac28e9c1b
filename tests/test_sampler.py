"""WindowSampler: windows, padding and masks at episode edges, order, lazy == in-memory."""
from __future__ import annotations

import numpy as np
import pytest

from imitate.data import WindowSampler, load_demo_file
from imitate.data.store import EpisodeStore, partition_blocks


def reference_window(store: EpisodeStore, episode: int, t: int, To: int, Ta: int):
    """A slow, per-item reference: window at step t (within the episode) of one episode."""
    ep = store.episode(episode)
    n = len(ep)
    obs = {k: np.stack([v[max(t - To + 1 + j, 0)] for j in range(To)]) for k, v in ep.obs.items()}
    act = np.stack([ep.actions[min(t + j, n - 1)] for j in range(Ta)])
    mask = np.array([t + j < n for j in range(Ta)])
    rew = np.stack([ep.rewards[min(t + j, n - 1)] for j in range(Ta)])
    nxt = {k: np.stack([v[max(t - To + 1 + j, 0)] for j in range(To)]) for k, v in ep.next_obs.items()}
    return obs, act, mask, rew, nxt


@pytest.mark.parametrize("To,Ta", [(1, 1), (2, 8), (4, 3), (3, 40)])
def test_every_window_matches_the_reference(demo_file, To, Ta):
    store = load_demo_file(demo_file)
    sampler = WindowSampler(store, obs_horizon=To, action_horizon=Ta, batch_size=7, with_next=True)
    batch = sampler.gather(np.arange(sampler.n_windows))
    i = 0
    for e, n in enumerate(store.episode_lengths):
        for t in range(n):
            obs, act, mask, rew, nxt = reference_window(store, e, t, To, Ta)
            for k in obs:
                np.testing.assert_array_equal(batch.obs[k][i], obs[k], err_msg=f"episode {e} t={t} obs {k}")
                np.testing.assert_array_equal(batch.next_obs[k][i], nxt[k])
            np.testing.assert_array_equal(batch.action[i], act, err_msg=f"episode {e} t={t}")
            np.testing.assert_array_equal(batch.action_mask[i], mask, err_msg=f"episode {e} t={t}")
            np.testing.assert_array_equal(batch.reward[i], rew)
            i += 1
    assert i == sampler.n_windows == len(store)


def test_shapes_and_dtypes(demo_file):
    sampler = WindowSampler(load_demo_file(demo_file), obs_horizon=2, action_horizon=16, batch_size=5)
    b = sampler.sample()
    assert b.obs["pos"].shape == (5, 2, 2) and b.action.shape == (5, 16, 2) and b.action_mask.shape == (5, 16)
    assert b.action_mask.dtype == bool and b.next_obs is None
    t = b.to_torch()
    assert tuple(t.action.shape) == (5, 16, 2) and str(t.action.dtype) == "torch.float32"


def test_epoch_visits_every_window_once_and_seeds_reproduce(demo_file):
    store = load_demo_file(demo_file)
    a = WindowSampler(store, batch_size=9, seed=3)
    order = np.concatenate([a.epoch_order(0)])
    assert sorted(order.tolist()) == list(range(len(store)))
    assert not np.array_equal(a.epoch_order(0), a.epoch_order(1))
    b = WindowSampler(store, batch_size=9, seed=3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.action, y.action)
    c = WindowSampler(store, batch_size=9, seed=4)
    assert not np.array_equal(next(iter(c)).action, WindowSampler(store, batch_size=9, seed=3).sample().action)


def test_filter_key_restricts_episodes(demo_file):
    store = load_demo_file(demo_file)
    valid = store.episodes_in("valid")
    sampler = WindowSampler(store, episodes="valid", batch_size=4)
    assert sampler.n_windows == int(store.episode_lengths[valid].sum())
    rows = np.concatenate([np.arange(store.episode_starts[e], store.episode_ends[e]) for e in valid])
    allowed = store.get("actions", rows)
    batch = sampler.gather(np.arange(sampler.n_windows))
    assert all((allowed == a).all(1).any() for a in batch.action[:, 0])


@pytest.mark.parametrize("block_rows,cache_blocks,shuffle_blocks", [(10, 1, 1), (10, 2, 3), (1000, 8, 8)])
def test_lazy_and_in_memory_give_identical_batches(demo_file, block_rows, cache_blocks, shuffle_blocks):
    mem = load_demo_file(demo_file, block_rows=block_rows)
    lazy = load_demo_file(demo_file, lazy=True, block_rows=block_rows, cache_blocks=cache_blocks)
    kw = dict(obs_horizon=2, action_horizon=5, batch_size=6, seed=11, with_next=True, shuffle_blocks=shuffle_blocks)
    a, b = WindowSampler(mem, **kw), WindowSampler(lazy, **kw)
    for _ in range(3 * len(a)):  # several epochs through the endless stream
        x, y = a.sample(), b.sample()
        for k in x.obs:
            np.testing.assert_array_equal(x.obs[k], y.obs[k])
            np.testing.assert_array_equal(x.next_obs[k], y.next_obs[k])
        np.testing.assert_array_equal(x.action, y.action)
        np.testing.assert_array_equal(x.action_mask, y.action_mask)
        np.testing.assert_array_equal(x.done, y.done)


@pytest.mark.parametrize("shuffle_blocks", [1, 2])
def test_block_shuffle_delivers_each_group_of_blocks_contiguously(demo_file, shuffle_blocks):
    store = load_demo_file(demo_file, block_rows=3)
    n_blocks = len(store.block_starts) - 1
    assert n_blocks >= 5
    sampler = WindowSampler(store, shuffle_blocks=shuffle_blocks, batch_size=4)
    blocks = np.searchsorted(store.block_starts, sampler._anchor[sampler.epoch_order(0)], side="right") - 1
    # walk the order: a group holds at most `shuffle_blocks` blocks and ends when all their windows came
    pos, groups = 0, 0
    while pos < len(blocks):
        members, end = set(), pos
        while end < len(blocks):
            if blocks[end] not in members and len(members) == shuffle_blocks:
                break
            members.add(blocks[end])
            end += 1
        window_counts = {b: int(np.sum(blocks == b)) for b in members}
        assert sum(window_counts.values()) == end - pos, "a block's windows are split across groups"
        pos, groups = end, groups + 1
    assert groups == -(-n_blocks // shuffle_blocks)
    if shuffle_blocks == 1:  # within a block the windows are shuffled, not in row order
        assert not np.all(np.diff(sampler._anchor[sampler.epoch_order(0)]) > 0)


def test_partition_blocks_respects_episode_boundaries():
    ends = np.array([5, 6, 18, 21, 51, 58, 60, 76])
    starts = partition_blocks(ends, 10)
    assert starts[0] == 0 and starts[-1] == 76 and set(starts[1:-1]) <= set(ends)
    assert np.all(np.diff(starts) > 0)


def test_resume_continues_the_same_stream(demo_file):
    store = load_demo_file(demo_file)
    a = WindowSampler(store, batch_size=7, seed=5)
    for _ in range(13):
        a.sample()
    state = a.state_dict()
    expected = [a.sample().action for _ in range(10)]
    b = WindowSampler(store, batch_size=7, seed=5)
    b.load_state_dict(state)
    for e in expected:
        np.testing.assert_array_equal(b.sample().action, e)


def test_ranks_draw_disjoint_shares(demo_file):
    store = load_demo_file(demo_file)
    shares = [WindowSampler(store, seed=2, rank=r, world_size=3).epoch_order(0) for r in range(3)]
    merged = np.concatenate(shares)
    assert len(merged) == len(store) and len(np.unique(merged)) == len(store)


def test_bad_arguments(demo_file):
    from imitate.errors import ImitateError

    store = load_demo_file(demo_file)
    with pytest.raises(ImitateError, match="obs_horizon"):
        WindowSampler(store, obs_horizon=0)
    with pytest.raises(ImitateError, match="no filter key 'test'"):
        WindowSampler(store, episodes="test")
    with pytest.raises(KeyError, match="obs/velocity"):
        WindowSampler(store, obs_keys=["velocity"])


def test_ranks_batches_together_are_the_one_process_batch(demo_file):
    store = load_demo_file(demo_file)  # 76 windows: 9 whole batches of 8 in the first epoch
    one = WindowSampler(store, batch_size=8, seed=4)
    ranks = [WindowSampler(store, batch_size=4, seed=4, rank=r, world_size=2) for r in range(2)]

    def rows(actions):  # the batch's windows as sorted rows, order-free
        flat = actions.reshape(len(actions), -1)
        return flat[np.lexsort(flat.T[::-1])]

    for _ in range(9):
        together = np.concatenate([s.sample().action for s in ranks])
        np.testing.assert_array_equal(rows(together), rows(one.sample().action))


@pytest.mark.parametrize("lazy", [False, True])
def test_iter_chunks_streams_the_chosen_rows_in_fixed_chunks(demo_file, lazy):
    store = load_demo_file(demo_file, lazy=lazy, block_rows=10)
    episodes = np.array([0, 2, 4, 7])
    expected = np.concatenate([store.get("actions", np.arange(store.episode_starts[i], store.episode_ends[i]))
                               for i in episodes])  # 5 + 12 + 30 + 16 = 63 rows
    chunks = list(store.iter_chunks("actions", episodes, chunk_rows=20))
    assert [len(c) for c in chunks] == [20, 20, 20, 3]
    np.testing.assert_array_equal(np.concatenate(chunks), expected)
    assert [len(c) for c in store.iter_chunks("actions", None, chunk_rows=1000)] == [len(store)]


def test_lazy_store_keeps_a_bounded_number_of_datasets_open(demo_file, monkeypatch):
    import h5py

    import imitate.data.store as store_module

    monkeypatch.setattr(store_module, "MAX_OPEN_DATASETS", 5)  # 8 demos x 3 keys read below
    store = load_demo_file(demo_file, lazy=True, block_rows=10, cache_blocks=2)
    reference = load_demo_file(demo_file, block_rows=10)
    a, b = WindowSampler(store, batch_size=8), WindowSampler(reference, batch_size=8)
    for _ in range(20):  # every block, more than the cache holds: memory does not grow with the demos
        np.testing.assert_array_equal(a.sample().action, b.sample().action)
        assert h5py.h5f.get_obj_count(store._file.id, h5py.h5f.OBJ_DATASET) <= 5
