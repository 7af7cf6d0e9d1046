import torch

from storymem.memory import Keyframe, MemoryBank, select_keyframes


def k(i):
    return Keyframe(f"memory/{i}.png", f"s{i}", i)


def test_sink_and_window_over_twenty_additions():
    bank = MemoryBank(max_memory=10, sink=3)
    history = []
    for i in range(20):
        bank.add(k(i))
        history.append([kf.frame for kf in bank.keyframes])
    assert history[0] == [0] and history[2] == [0, 1, 2]
    assert history[9] == list(range(10))  # full
    assert history[10] == [0, 1, 2] + list(range(4, 11))  # the oldest window entry leaves
    assert history[19] == [0, 1, 2] + list(range(13, 20))  # sink forever, window = 7 most recent
    assert all(len(h) == min(i + 1, 10) for i, h in enumerate(history))
    restored = MemoryBank.from_state(bank.state())
    assert restored.keyframes == bank.keyframes
    restored.add(k(20))
    assert [kf.frame for kf in restored.keyframes] == [0, 1, 2] + list(range(14, 21))


def test_edge_capacities():
    no_sink = MemoryBank(max_memory=2, sink=0)
    no_sink.extend([k(0), k(1), k(2)])
    assert [kf.frame for kf in no_sink.keyframes] == [1, 2]
    all_sink = MemoryBank(max_memory=2, sink=2)
    all_sink.extend([k(0), k(1), k(2)])
    assert [kf.frame for kf in all_sink.keyframes] == [0, 1]


def embeddings_at(angles_deg):
    """Unit vectors in a plane: cosine similarity = cos(angle difference)."""
    a = torch.tensor(angles_deg, dtype=torch.float64).deg2rad()
    return torch.stack([a.cos(), a.sin()], 1)


def test_scan_takes_frames_that_differ_from_the_last_keyframe():
    # cos(20 deg) = 0.94 (same), cos(30 deg) = 0.866 (new)
    frames = embeddings_at([0, 10, 20, 30, 40, 50, 60])
    assert select_keyframes(frames, threshold=0.9, max_keyframes=3) == [0, 3, 6]


def test_threshold_is_lowered_until_at_most_three():
    # 8 frames 26 deg apart: at 0.9 each one is new (cos 26 = 0.899) -> 8 > 3; lowering the
    # threshold to 0.89 ... until frames two apart (cos 52 = 0.616) stop counting as new.
    frames = embeddings_at([26 * i for i in range(8)])
    assert len(select_keyframes(frames, threshold=0.9, max_keyframes=100)) == 8
    chosen = select_keyframes(frames, threshold=0.9, max_keyframes=3)
    assert len(chosen) <= 3 and chosen[0] == 0
    # The exact answer: the largest threshold (in 0.01 steps) that gives <= 3 keyframes.
    sims = frames @ frames.T

    def scan(t):
        out = [0]
        for i in range(1, 8):
            if sims[i, out[-1]] < t:
                out.append(i)
        return out

    t = 90
    while len(scan(t / 100)) > 3:
        t -= 1
    assert chosen == scan(t / 100) and len(scan((t + 1) / 100)) > 3


def test_quality_rejects_frames_and_picks_the_first_passing_one():
    frames = embeddings_at([0, 5, 60, 120])
    quality = torch.tensor([1.0, 4.0, 2.0, 5.0])
    assert select_keyframes(frames, quality, 3.0) == [1, 3]
    assert select_keyframes(frames, torch.zeros(4), 3.0) == []  # a shot may yield none


def test_candidates_similar_to_memory_are_dropped():
    frames = embeddings_at([0, 60, 120])
    memory = embeddings_at([62, 200])  # cos(2 deg) > 0.9 with frame 1
    assert select_keyframes(frames, memory_embeddings=memory) == [0, 2]
    assert select_keyframes(frames, memory_embeddings=embeddings_at([90])) == [0, 1, 2]


def test_scorers_load_once_and_name_problems(tmp_path):
    import pytest

    from storymem import InputError, WeightsNotFoundError
    from storymem.scoring import AestheticScorer, ClipImageEmbedder, make_quality_scorer
    from storymem.scoring.quality import load_aesthetic_head

    assert make_quality_scorer("none") is None
    with pytest.raises(InputError, match="quality filter must be hpsv3, aesthetic or none, got 'best'"):
        make_quality_scorer("best")
    with pytest.raises(InputError, match="needs --aesthetic-head PATH"):
        make_quality_scorer("aesthetic")
    with pytest.raises(WeightsNotFoundError, match="aesthetic head not found"):
        make_quality_scorer("aesthetic", aesthetic_head=str(tmp_path / "none.pth"))
    # A LAION-style linear head on (tiny) CLIP features scores head(normalised embedding).
    head = torch.nn.Linear(16, 1)
    torch.save(head.state_dict(), tmp_path / "head.pth")
    loaded = load_aesthetic_head(tmp_path / "head.pth")
    embedder = ClipImageEmbedder.tiny()
    import numpy as np
    import PIL.Image

    images = [PIL.Image.fromarray(np.full((40, 30, 3), v, np.uint8)) for v in (10, 200)]
    scores = AestheticScorer(embedder, loaded).score(images)
    features = embedder.embed(images)
    assert features.shape == (2, 16) and torch.allclose(features.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(scores, head(features).squeeze(-1).detach())
