"""benchmarks/toy_benchmark.py: its story sets are the CLI's toy stories, and bad sets are refused.
(The benchmark itself is minutes of generation; its figures are in docs/.)"""

import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import REPO
from storymem import StoryMemPipeline

SCRIPT = REPO / "benchmarks" / "toy_benchmark.py"
# The experiment history quotes the stored results; these tests tie each figure to its file.
NOTES = REPO / "docs" / "notes" / "toy-experiments.md"


def load_benchmark(name: str):
    """benchmarks/<name>.py as a module (benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_script():
    return load_benchmark("toy_benchmark")


def test_story_sets_are_the_toy_stories_command_writes(tmp_path, cli):
    bench = load_script()
    single = bench.write_story_set(tmp_path / "single", "single", 3, characters=2)  # single ignores characters
    multi = bench.write_story_set(tmp_path / "multi", "multi", 3, characters=2)
    assert cli("toy-stories", "--out", tmp_path / "cli-single", "--count", 3)[0] == 0
    assert cli("toy-stories", "--out", tmp_path / "cli-multi", "--count", 3, "--shots", 8, "--characters", 2)[0] == 0
    for ours, theirs in ((single, tmp_path / "cli-single"), (multi, tmp_path / "cli-multi")):
        files = sorted(p.name for p in ours.iterdir())
        assert len(files) == 3 and files == sorted(p.name for p in theirs.iterdir())
        assert all((ours / f).read_text() == (theirs / f).read_text() for f in files)
    story = json.loads(next(multi.iterdir()).read_text())
    assert len(story["characters"]) == 2 and sum(len(s["video_prompts"]) for s in story["scenes"]) == 8
    story = json.loads(next(single.iterdir()).read_text())
    assert "characters" not in story and sum(len(s["video_prompts"]) for s in story["scenes"]) == 6


def test_the_cast_sets_give_the_same_pictures_per_character_globally_or_not_at_all(tmp_path):
    from storymem.story import load_story

    sets = load_script().cast_story_sets(tmp_path, 2, characters=3)
    assert list(sets) == ["cast", "global", "none"]
    for file in sorted(sets["cast"].glob("*.json")):
        cast, whole, none = (load_story(sets[v] / file.name) for v in sets)
        pictures = [p for refs in cast.cast.values() for p in refs]
        assert len(cast.cast) == 3 and len(pictures) == 3
        assert whole.references == pictures and whole.cast == {} and none.references == [] and none.cast == {}
        # the looks stay in words for the identity metric; the shots are the same in all three
        assert (
            [c.look for c in cast.characters] == [c.look for c in whole.characters] == [c.look for c in none.characters]
        )
        assert cast.scenes == whole.scenes == none.scenes


def test_an_unknown_set_is_refused_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--sets", "single,pairs"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "--sets: expected some of single, multi, cast2, cast3 (comma-separated), got 'single,pairs'" in result.stderr
    assert not (tmp_path / "summary.json").exists()


def stored_result(name: str) -> dict:
    return json.loads((REPO / "benchmarks" / "results" / f"{name}.json").read_text())


def quoted_column(result: dict, column: str, digits: int) -> str:
    """A column as the notes quote it: storymem / independent / chain."""
    return " / ".join(f"{result[m][column]:.{digits}f}" for m in ("storymem", "independent", "chain"))


def named_column(result: dict, column: str, digits: int) -> str:
    """A column as the notes quote it with its methods named: storymem X / independent Y / chain Z."""
    return " / ".join(f"{m} {result[m][column]:.{digits}f}" for m in ("storymem", "independent", "chain"))


def gain_over_independent(result: dict) -> float:
    return 100 * (result["storymem"]["identity"] - result["independent"]["identity"])


def entity_gain(result: dict) -> float:
    """Points of identity that entity-aware memory adds over the official policy (multi set)."""
    return 100 * (result["storymem-entity"]["identity"] - result["storymem"]["identity"])


def test_the_stored_toy_results_give_the_notes_figures():
    """The notes quote benchmarks/results/toy_*_seed*.json: each figure it states must be the
    stored one (rounded as written), and each gain the difference of two stored columns."""
    notes = " ".join(NOTES.read_text().split())  # wrapped lines read as one

    def load(name: str) -> dict:
        return stored_result(f"toy_{name}")[name.split("_")[0]]

    def slashes(rows: dict, methods: list[str], column: str, digits: int = 3, names=None) -> str:
        """'0.1 / 0.2' or, with names, 'storymem 0.1 / independent 0.2'."""
        values = [f"{rows[m][column]:.{digits}f}" for m in methods]
        return " / ".join(values if names is None else [f"{n} {v}" for n, v in zip(names, values, strict=True)])

    def gain(rows: dict, better: str, worse: str) -> str:
        return f"+{100 * (rows[better]['identity'] - rows[worse]['identity']):.1f} points"

    multi0, multi1 = load("multi_seed0"), load("multi_seed1")
    single0, single1 = load("single_seed0"), load("single_seed1")
    four, three = ["storymem", "storymem-entity", "independent", "chain"], ["storymem", "independent", "chain"]
    for label, method in zip(
        ["storymem, official memory", "storymem, entity-aware memory", "independent", "chain"], four, strict=True
    ):
        cells = [f"{multi0[method][c]:.3f}" for c in ("identity", "identity_colour", "identity_intro")]
        if method == "storymem-entity":
            cells = [f"**{c}**" for c in cells]
        assert f"| {label} | {' | '.join(cells)} |" in notes, label
    expected = [
        gain(multi0, "storymem-entity", "storymem"),  # +19.2
        slashes(multi1, four, "identity", names=["official", "entity", "independent", "chain"]),
        f"colour {slashes(multi1, four, 'identity_colour')}, intro {slashes(multi1, four, 'identity_intro')}",
        gain(multi1, "storymem-entity", "storymem"),  # +14.2
        f"single-character {slashes(single0, three, 'identity', names=three)} in identity",
        gain(single0, "storymem", "independent"),  # +27.5
        f"identity_colour {slashes(single0, three, 'identity_colour', 2)}",
        f"{slashes(single1, three, 'identity', names=three)}, {gain(single1, 'storymem', 'independent')}",
    ]
    for text in expected:
        assert text in notes, text


def load_shape_probe():
    return load_benchmark("toy_shape_copy")


def test_shape_probe_examples_differ_in_every_scene_setting_and_cycle_the_shapes():
    probe = load_shape_probe()
    cases = probe.examples(9, seed=4)
    assert [look.shape for look, _, _ in cases] == ["circle", "square", "triangle"] * 3
    for _, target, other in cases:
        assert other.place != target.place and other.action != target.action and other.shot != target.shot
        assert target.look is None and target.caption().startswith("Pip ")  # the name only


def test_shape_probe_summary_counts_attributes_and_confusions():
    from storymem.toyworld import Look

    probe = load_shape_probe()
    triangle, square = Look("triangle", "red", "plain"), Look("square", "red", "plain")
    records = [
        {"condition": "memory-same", "truth": triangle, "found": triangle},
        {"condition": "memory-same", "truth": triangle, "found": square},
        {"condition": "memory-same", "truth": triangle, "found": Look("triangle", "blue", "striped")},
        {"condition": "memory-same", "truth": square, "found": None},
        {"condition": "text", "truth": square, "found": square},
    ]
    summary = probe.summarise(records)
    assert set(summary) == {"memory-same", "text"}  # no records, no row
    same = summary["memory-same"]
    assert same["examples"] == 4
    assert (same["shape"], same["colour"], same["pattern"], same["look"]) == (0.5, 0.5, 0.5, 0.25)
    assert same["shape_confusion"] == {"square->none": 1, "triangle->square": 1, "triangle->triangle": 2}
    assert summary["text"]["look"] == 1.0


def test_shape_probe_runs_on_the_toy_model(tmp_path, monkeypatch, capsys):
    probe, out = load_shape_probe(), tmp_path / "probe.json"
    scales, real = [], StoryMemPipeline.generate_shot

    def spy(self, *args, **kwargs):
        scales.append(kwargs.get("guidance_scale"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(StoryMemPipeline, "generate_shot", spy)
    monkeypatch.setattr(sys, "argv", ["toy_shape_copy.py", "--count", "1", "--out", str(out), "--guidance", "2"])
    probe.main()
    assert scales == [2.0] * 3 and json.loads(out.read_text())["guidance"] == 2.0
    summary = json.loads(out.read_text())["summary"]
    assert list(summary) == ["text", "memory-same", "memory-other"]
    assert all(row["examples"] == 1 and sum(row["shape_confusion"].values()) == 1 for row in summary.values())
    printed = capsys.readouterr().out
    assert "memory-other" in printed and "shapes: circle->" in printed
    monkeypatch.setattr(sys, "argv", ["toy_shape_copy.py", "--count", "0"])
    with pytest.raises(SystemExit) as exit_info:
        probe.main()
    assert exit_info.value.code == 2 and "--count: expected at least 1, got 0" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["toy_shape_copy.py", "--guidance", "0"])
    with pytest.raises(SystemExit):
        probe.main()
    assert "--guidance: a scale above 0 (1 is no guidance), got 0.0" in capsys.readouterr().err


def load_feature_probe():
    return load_benchmark("toy_shape_features")


def test_feature_probe_finds_the_character_tokens_of_each_latent_frame():
    import numpy as np

    from storymem.toyworld.world import background

    probe = load_feature_probe()
    frames = np.stack([background("snow", 32)] * 5)
    frames[3, 5, 9] = (220, 40, 40)  # one character pixel in frame 3: token (row 1, column 2)
    mask = probe.character_tokens(frames, "snow")
    assert mask.shape == (5, 8, 8) and mask.sum() == 1 and mask[3, 1, 2]
    latent = probe.latent_frame_tokens(mask)  # frame 0 alone, then frames 1-2 and 3-4
    assert latent.shape == (3, 8, 8) and latent.sum() == 1 and latent[2, 1, 2]
    mask[0, 7, 7] = True
    assert probe.latent_frame_tokens(mask)[0, 7, 7]


def test_feature_probe_pools_over_the_mask_and_its_classifier_tells_signal_from_noise():
    import numpy as np
    import torch

    probe = load_feature_probe()
    hidden = torch.arange(2 * 1 * 2 * 2 * 1, dtype=torch.float32).reshape(2, 1, 2, 2, 1)
    mask = torch.tensor([[[[True, False], [False, True]]], [[[False, False], [False, False]]]])
    assert probe.pooled(hidden, mask).flatten().tolist() == [1.5, 0.0]  # mean of 0 and 3; nothing -> 0

    rng = np.random.default_rng(0)
    labels = np.arange(300) % 3
    signal = rng.normal(size=(300, 16))
    signal[:, 4] += 8 * labels  # one feature tells the class
    assert probe.probe_accuracy(signal, labels) > 0.95
    assert probe.probe_accuracy(rng.normal(size=(300, 16)), labels) < 0.5


def test_feature_probe_runs_on_the_toy_model(tmp_path, monkeypatch, capsys):
    probe, out = load_feature_probe(), tmp_path / "features.json"
    monkeypatch.setattr(sys, "argv", ["toy_shape_features.py", "--count", "12", "--memory", "2", "--out", str(out)])
    probe.main()
    result = json.loads(out.read_text())
    assert list(result["accuracy"]) == list(probe.FEATURES)
    assert all(list(layers) == ["0", "1", "2", "3", "4"] for layers in result["accuracy"].values())
    assert "shot tokens, memory" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["toy_shape_features.py", "--sigma", "0"])
    with pytest.raises(SystemExit) as exit_info:
        probe.main()
    assert (
        exit_info.value.code == 2
        and "--sigma: expected a noise level above 0 and at most 1, got 0.0" in capsys.readouterr().err
    )


def table_row(label: str, cells: list[str]) -> str:
    return f"| {label} | {' | '.join(cells)} |"


def test_the_notes_shape_tables_are_the_stored_results():
    """The notes' two shape-probe tables quote benchmarks/results/toy_shape_{copy,features}_*.json."""
    notes = NOTES.read_text()
    copy_rows = {
        "shipped": "shipped",
        "shipped, no LoRA": "shipped_nolora",
        "seed 1 (float32)": "seed1",
        "6 layers of width 160, from scratch, no LoRA": "6layers_nolora",
        "shipped base + 2400 steps at `--p-memory 0.6`, no LoRA": "memory_pretrained_nolora",
        "shipped base + 6000 steps at `--p-memory 0.8`, no LoRA": "memory6000_nolora",
        "shipped base + 12000 steps at `--p-memory 0.8`, no LoRA": "memory12000_nolora",
        "shipped base + 16000 steps: the 12000-step weights + `--stages memory --memory-cycles 2 --seed 3`, no LoRA": (
            "memory16000_nolora"
        ),
        "the same with the recipe's M2V LoRA trained on it": "memory12000",
        "seed 1: `--stages base,memory --seed 1`, no LoRA": "memory_seed1_nolora",
        "from scratch, 9000 steps at `--p-memory 0.7`, no LoRA": "scratch9000_nolora",
        "from scratch at batch 4: 10000 steps, then 12000 at `--p-memory 0.8`, no LoRA": "batch4_nolora",
        "shipped, `--guidance 2` (the preset's is 3)": "shipped_guidance2",
        "shipped, `--guidance 1`": "shipped_guidance1",
        "shipped base + 12000 steps at `--p-memory 0.8`, no LoRA, `--guidance 2`": "memory12000_nolora_guidance2",
        "the same, `--guidance 1`": "memory12000_nolora_guidance1",
        "seed 1: its base, then the memory stage with one-frame shots (`--memory-shot-frames 1`), no LoRA": (
            "oneframe_seed1_nolora"
        ),
    }
    for label, name in copy_rows.items():
        summary = stored_result(f"toy_shape_copy_{name}")["summary"]
        cells = [summary[c]["shape"] for c in ("text", "memory-same", "memory-other")]
        cells.append(summary["memory-other"]["colour"])
        text = [f"{v:.3f}" for v in cells]
        if name == "memory12000_nolora":
            text[2] = f"**{text[2]}**"
        assert table_row(label, text) in notes, label
    feature_rows = {
        "shipped": "shipped",
        "shipped, no LoRA": "shipped_nolora",
        "shipped base + 6000 steps at `--p-memory 0.8`, no LoRA": "memory6000_nolora",
        "shipped base + 12000 steps at `--p-memory 0.8`, no LoRA": "memory12000_nolora",
    }
    for label, name in feature_rows.items():
        accuracy = stored_result(f"toy_shape_features_{name}")["accuracy"]
        cells = [accuracy[feature]["4"] for feature in ("memory tokens", "shot tokens, text", "shot tokens, memory")]
        assert table_row(label, [f"{v:.3f}" for v in cells]) in notes, label


def test_the_notes_memory_training_story_figures_are_the_stored_results():
    """The story figures for the memory-trained (12000-step) base, with and without its LoRA."""
    flat = " ".join(NOTES.read_text().split())
    single = stored_result("toy_single20_memory12000_nolora")["single"]
    quoted = " / ".join(f"{m} {single[m]['identity']:.2f}" for m in ("independent", "chain"))
    assert f"storymem **{single['storymem']['identity']:.2f}** / {quoted}" in flat
    gain = 100 * (single["storymem"]["identity"] - single["independent"]["identity"])
    assert f"(+{gain:.0f} points over independent;" in flat
    assert (
        f"identity_colour {single['storymem']['identity_colour']:.2f}, identity_intro {single['storymem']['identity_intro']:.2f}"
        in flat
    )
    with_lora = stored_result("toy_single20_memory12000")["single"]
    identities = " / ".join(f"{m} {with_lora[m]['identity']:.2f}" for m in ("storymem", "independent", "chain"))
    gain = 100 * (with_lora["storymem"]["identity"] - with_lora["independent"]["identity"])
    assert f"identity {identities} (+{gain:.0f} points)" in flat
    multi = stored_result("toy_multi_memory12000_nolora")["multi"]
    methods = ("storymem", "storymem-entity", "independent", "chain")
    identity, colour = ([f"{multi[m][column]:.3f}" for m in methods] for column in ("identity", "identity_colour"))
    official, entity, independent, chain = identity
    assert f"identity official {official} / entity-aware {entity} / independent {independent} / chain {chain}" in flat
    assert f"colour {' / '.join(colour)}." in flat
    gap = 100 * (multi["storymem-entity"]["identity"] - multi["storymem"]["identity"])
    assert f"+{gap:.1f} points above the official policy (+19.2" in flat
    multi = stored_result("toy_multi_memory12000")["multi"]
    official, entity = (multi[m]["identity"] for m in ("storymem", "storymem-entity"))
    assert f"official {official:.3f} / entity-aware {entity:.3f}, +{100 * (entity - official):.1f} points." in flat
    seed1 = stored_result("toy_single_memory_seed1_nolora")["single"]
    assert f"identity {named_column(seed1, 'identity', 3)}, **+{gain_over_independent(seed1):.1f} points**" in flat
    seed0 = stored_result("toy_single_memory12000_nolora")["single"]
    identity, intro = quoted_column(seed0, "identity", 3), seed0["storymem"]["identity_intro"]
    assert f"identity {identity}, **+{gain_over_independent(seed0):.1f} points**, identity_intro {intro:.3f}" in flat
    assert (
        f"identity_colour {quoted_column(seed1, 'identity_colour', 2)}, identity_intro {seed1['storymem']['identity_intro']:.2f}"
        in flat
    )


def test_the_notes_two_seed_target_table_is_the_stored_results():
    """Issue 18's targets table: every cell, the gains and the intro counts come from the stored results."""
    notes = NOTES.read_text()
    rows = {
        ("memory-trained, seed 0", "single"): "toy_single_memory12000_nolora",
        ("memory-trained, seed 1", "single"): "toy_single_memory_seed1_nolora",
        ("memory-trained, seed 0", "multi"): "toy_multi_memory12000_nolora",
        ("memory-trained, seed 1", "multi"): "toy_multi_memory_seed1_nolora",
        ("shipped recipe, seed 0 (shipped)", "single"): "toy_single_seed0",
        ("shipped recipe, seed 1", "single"): "toy_single_seed1",
        ("shipped recipe, seed 0 (shipped)", "multi"): "toy_multi_seed0",
        ("shipped recipe, seed 1", "multi"): "toy_multi_seed1",
    }
    intro_right = {"memory-trained": 0, "shipped recipe": 0}
    for (weights, name), file in rows.items():
        result = stored_result(file)[name]
        identity = {m: f"{r['identity']:.3f}" for m, r in result.items()}
        if name == "single":
            gain = gain_over_independent(result)
            cells = [identity["storymem"], "-", identity["independent"], identity["chain"]]
            intro_shots, intro = 40, result["storymem"]["identity_intro"]
        else:
            gain = entity_gain(result)
            cells = [identity["storymem"], identity["storymem-entity"], identity["independent"], identity["chain"]]
            intro_shots, intro = 80, result["storymem-entity"]["identity_intro"]
        shown = f"**+{gain:.1f}**" if weights.startswith("memory") else f"+{gain:.1f}"
        assert f"| {weights} | {name} | {' | '.join(cells)} | {shown} |" in notes, (weights, name)
        intro_right[weights.split(",")[0]] += round(intro * intro_shots)
    flat = " ".join(notes.split())
    gap = entity_gain(stored_result("toy_multi_memory_seed1_nolora")["multi"])
    assert f"entity-aware memory is **+{gap:.1f} points** above the official policy" in flat
    assert (
        f"{intro_right['memory-trained']} of 240 intro shots right against {intro_right['shipped recipe']} of 240"
        in flat
    )


def assert_single_story_figures(flat: str, name: str) -> None:
    """The notes quote a 40-story single-set result as: identity storymem X / independent Y /
    chain Z, +G points ..., identity_colour C, identity_intro I."""
    result = stored_result(name)["single"]
    assert f"identity {named_column(result, 'identity', 3)}, +{gain_over_independent(result):.1f} points" in flat
    storymem = result["storymem"]
    assert f"identity_colour {storymem['identity_colour']:.3f}, identity_intro {storymem['identity_intro']:.3f}" in flat


def test_the_notes_half_batch_figures_are_the_stored_results():
    flat = " ".join(NOTES.read_text().split())
    assert_single_story_figures(flat, "toy_single_batch4_nolora")
    shape = stored_result("toy_shape_copy_batch4_nolora")["summary"]
    text, other = shape["text"]["shape"], shape["memory-other"]["shape"]
    assert f"shape right from text {text:.3f}, from another scene {other:.3f}" in flat


def test_the_notes_guidance_figures_are_the_stored_results():
    """Circles right from text and from another scene at guidance 3 (the preset's), 2 and 1."""
    flat = " ".join(NOTES.read_text().split())

    def circles(name: str, condition: str) -> int:
        return stored_result(f"toy_shape_copy_{name}")["summary"][condition]["shape_confusion"].get("circle->circle", 0)

    shipped = [circles(n, "text") for n in ("shipped", "shipped_guidance2", "shipped_guidance1")]
    trained = ["memory12000_nolora", "memory12000_nolora_guidance2", "memory12000_nolora_guidance1"]
    text = [circles(n, "text") for n in trained]
    other = [circles(n, "memory-other") for n in trained]
    shapes = [stored_result(f"toy_shape_copy_{n}")["summary"]["memory-other"]["shape"] for n in trained]
    assert f"{shipped[0]}, {shipped[1]} and {shipped[2]} of 20 at guidance 3, 2 and 1 for the shipped weights" in flat
    assert f"{text[0]}, {text[1]} and {text[2]} for the memory-trained ones" in flat
    assert f"get {other[0]}, {other[1]} and {other[2]} of 20 circles right" in flat
    assert f"no better ({shapes[0]:.3f}, {shapes[1]:.3f}, {shapes[2]:.3f})" in flat
    longer = stored_result("toy_shape_copy_memory16000_nolora")["summary"]["memory-other"]
    triangles = longer["shape_confusion"]["triangle->triangle"]
    assert f"to {longer['shape']:.3f} (triangles {triangles} of 20), but circles stay at" in flat
    assert f"circles stay at {longer['shape_confusion']['circle->circle']} of 20" in flat


def test_the_notes_one_frame_shot_figures_are_the_stored_results():
    flat = " ".join(NOTES.read_text().split())
    assert_single_story_figures(flat, "toy_single_oneframe_seed1_nolora")
    shape = stored_result("toy_shape_copy_oneframe_seed1_nolora")["summary"]
    other, same = shape["memory-other"]["shape"], shape["memory-same"]["shape"]
    assert f"from another scene {other:.3f} and from the same scene {same:.3f}" in flat


def test_the_cast_table_is_the_stored_result():
    """docs/toy-model.md's cast table and its gains come from the stored cast benchmark."""
    page = (REPO / "docs" / "toy-model.md").read_text()
    flat = " ".join(page.split())
    result = stored_result("toy_cast_shipped")
    labels = {
        "cast": "each character's own (cast)",
        "global": "all of them for every shot (global, MR2V)",
        "none": "none",
    }
    for name, title in (("cast2", "2 characters"), ("cast3", "3 characters")):
        for i, (variant, label) in enumerate(labels.items()):
            cells = [f"{result[name][variant][c]:.3f}" for c in ("identity", "identity_colour", "identity_intro")]
            cells = [f"**{c}**" for c in cells] if variant == "cast" else cells
            row = f"| {title if i == 0 else ''} | {label} | {' | '.join(cells)} |"
            assert row.replace("|  |", "| |") in page, row
    gains = [100 * (result[n]["cast"]["identity"] - result[n]["global"]["identity"]) for n in ("cast2", "cast3")]
    assert f"by +{gains[0]:.1f} points with 2 characters and +{gains[1]:.1f} with 3" in flat


def test_the_steering_table_is_the_stored_result():
    """docs/direct.md's steering figures come from the stored toy steering benchmark."""
    page = (REPO / "docs" / "direct.md").read_text()
    result = stored_result("toy_steering_shipped")["summary"]
    for method, label in (("automatic", "automatic (official)"), ("steered", "steered by hand")):
        cells = [f"{result[method][c]:.3f}" for c in ("identity", "identity_colour", "identity_intro")]
        cells = [f"**{c}**" for c in cells] if method == "steered" else cells
        assert f"| {label} | {' | '.join(cells)} |" in page, method
    gain = 100 * (result["steered"]["identity"] - result["automatic"]["identity"])
    assert f"Steering adds +{gain:.1f} points of per-character identity" in page
