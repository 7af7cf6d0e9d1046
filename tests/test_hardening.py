"""Nothing lost, nothing silently wrong: inputs checked first, the run folder's life, damaged
state, numerical health (tiny model, CPU)."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import run_story
from storymem import InputError, LoraError, NumericalError, StoryMemPipeline, parse_story
from storymem.files import FolderLock
from test_lora import write_lora
from test_runner import STORY

SHORT = {
    "story_overview": "x",
    "scenes": [{"scene_num": 1, "video_prompts": ["a fox", "a fox runs"], "cut": [True, False]}],
}


@pytest.fixture(scope="module")
def pipe():
    p = StoryMemPipeline.from_preset("tiny")
    p.set_progress_bar_config(disable=True)
    return p


def generate(pipe, out, story=SHORT, **kw):
    return run_story(pipe, parse_story(story), out, **kw)


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(pipe, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    generate(pipe, out)
    return out


# ---------------------------------------------------------------------------- check first
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"height": 33}, "multiples of 16"),
        ({"height": 0}, "height must be a whole number of at least 1, got 0"),
        ({"steps": 0}, "steps must be a whole number of at least 1, got 0"),
        ({"steps": -2}, "steps must be a whole number of at least 1, got -2"),
        ({"frames": 0}, "frames must be a whole number of at least 1, got 0"),
        ({"frames": 6}, "num_frames must be 4k+1"),
        ({"frames": 1}, "frames must be larger, got 1"),
        ({"max_memory": 0}, "max-memory must be a whole number of at least 1, got 0"),
        ({"sink": 5, "max_memory": 4}, "sink must be a whole number from 0 to max-memory (4), got 5"),
        ({"sink": -1}, "sink must be a whole number from 0"),
        ({"references": ["/nowhere/ref.png"]}, "/nowhere/ref.png: image not found"),
        ({"sigma_grid": "wan"}, "sigma grid must be one of"),
        ({"quality": "best"}, "quality"),
        ({"method": "loop"}, "method must be one of"),
        ({"colour": "red"}, "unknown setting 'colour'"),
    ],
)
def test_overwrite_with_a_bad_setting_keeps_the_finished_run(pipe, finished, bad, message):
    before = snapshot(finished)
    with pytest.raises(InputError) as info:
        generate(pipe, finished, overwrite=True, **bad)
    assert message in str(info.value)
    assert snapshot(finished) == before


def test_a_bad_setting_creates_no_folder(pipe, tmp_path):
    with pytest.raises(InputError):
        generate(pipe, tmp_path / "new", steps=0)
    assert not (tmp_path / "new").exists()


def test_shot_numbers_mean_what_they_say(pipe):
    for kw, message in (
        ({"num_inference_steps": 0}, "num_inference_steps must be a whole number of at least 1, got 0"),
        ({"height": 0}, "height must be a whole number of at least 1, got 0"),
        ({"num_frames": -3}, "num_frames must be a whole number of at least 1, got -3"),
    ):
        with pytest.raises(InputError, match=message):
            pipe.generate_shot("a fox", seed=0, **kw)


# ---------------------------------------------------------------------------- the folder's life
def skeleton(out):
    for name in ("shots", "memory", "tails"):
        (out / name).mkdir(parents=True)
    (out / "story.json").write_text("{}")


@pytest.mark.parametrize("how", [{}, {"resume": True}, {"overwrite": True}])
def test_a_first_run_killed_before_its_state_is_no_dead_end(pipe, tmp_path, how):
    out = tmp_path / "run"
    skeleton(out)
    result = generate(pipe, out, **how)
    assert result.generated == 2 and json.loads((out / "state.json").read_text())["finished"]
    assert not (out / FolderLock.NAME).exists()  # released


def hold_lock(folder):
    """A process holding the folder's lock until it is killed."""
    code = f"from storymem.files import FolderLock; import time; FolderLock({str(folder)!r}).acquire(); print(1, flush=True); time.sleep(600)"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "1"
    return holder


def test_a_second_process_is_refused_and_a_dead_holders_lock_taken_over(pipe, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    lock = out / FolderLock.NAME
    holder = hold_lock(out)
    with pytest.raises(InputError, match=rf"another storymem process \(PID {holder.pid} on .*\) is using this folder"):
        generate(pipe, out)
    assert lock.exists()
    holder.kill()  # killed while holding it: the OS lets go
    holder.wait()
    assert lock.exists() and generate(pipe, out).generated == 2
    assert not lock.exists()
    lock.write_text("someone 12345")  # a lock file nobody holds (an older version's, a crash's)
    assert generate(pipe, out, overwrite=True).generated == 2


def test_two_processes_starting_at_once_never_both_hold_the_lock(tmp_path):
    """100 paired starts: two processes released at the same instant try the same folder's lock;
    exactly one holds it each time (the other is refused), never both."""
    code = """
import sys, time
from storymem.errors import InputError
from storymem.files import FolderLock
folder, start = sys.argv[1], float(sys.argv[2])
time.sleep(max(0.0, start - time.time() - 0.01))
while time.time() < start:
    pass
lock = FolderLock(folder)
try:
    lock.acquire()
except InputError:
    print("refused", flush=True)
    sys.exit(0)
held = time.time()
time.sleep(0.3)
print("held", held, time.time(), flush=True)
lock.release()
"""
    script = tmp_path / "race.py"
    script.write_text(code)
    trials = 100
    folders = [tmp_path / f"run{i}" for i in range(trials)]
    for folder in folders:
        folder.mkdir()
    outcomes = []
    for i in range(0, trials, 10):  # ten pairs at a time
        start = time.time() + 1.0
        procs = [
            subprocess.Popen([sys.executable, str(script), str(f), str(start)], stdout=subprocess.PIPE, text=True)
            for f in folders[i : i + 10]
            for _ in range(2)
        ]
        results = [p.communicate(timeout=60)[0].split() for p in procs]
        outcomes += [results[j : j + 2] for j in range(0, len(results), 2)]
    for pair in outcomes:
        holds = [(float(r[1]), float(r[2])) for r in pair if r[0] == "held"]
        assert holds, "neither process got the lock"
        if len(holds) == 2:  # one after the other is fine; at the same time never
            (a0, a1), (b0, b1) = sorted(holds)
            assert a1 <= b0, f"both held the lock at once: {holds}"
    refused = sum(r[0] == "refused" for pair in outcomes for r in pair)
    assert refused >= trials // 2  # the starts did collide: most pairs had a loser


# ---------------------------------------------------------------------------- damaged state
def copy_run(finished, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda out: (out / "state.json").write_text('{"version": 1, "sett'), "the run state is unreadable or damaged"),
        (lambda out: (out / "state.json").write_text("[1, 2]"), "the run state is damaged (not a JSON object)"),
        (lambda out: (out / "state.json").write_bytes(b"\xff\xfe\x00"), "the run state is unreadable or damaged"),
        (
            lambda out: (out / "state.json").write_text(
                json.dumps({**json.loads((out / "state.json").read_text()), "completed": "01_01"})
            ),
            "'completed' missing or wrong",
        ),
        (lambda out: (out / "shots" / "01_01.mp4").unlink(), "shot 01_01's video is missing"),
        (lambda out: next((out / "memory").glob("*.png")).unlink(), "a memory keyframe is missing"),
    ],
)
def test_damaged_state_is_one_line_naming_the_file(pipe, finished, tmp_path, damage, message):
    out = copy_run(finished, tmp_path)
    state = json.loads((out / "state.json").read_text())
    state["completed"], state["finished"] = state["completed"][:1], False  # one shot left to do
    state["shots"] = {k: v for k, v in state["shots"].items() if k in state["completed"]}
    state["memory"]["window_keyframes"] = [
        k for k in state["memory"]["window_keyframes"] if k["shot"] in state["completed"]
    ]
    (out / "state.json").write_text(json.dumps(state))
    damage(out)
    with pytest.raises(InputError) as info:
        generate(pipe, out, resume=True)
    assert message in str(info.value) and "--overwrite" in str(info.value)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------- numerical health
def test_nan_lora_weights_are_refused_naming_the_tensor(pipe, tmp_path):
    high, low = write_lora(tmp_path / "lora", pipe)
    key = next(iter(high))
    high[key][0, 0] = float("nan")
    save_file(high, str(tmp_path / "lora" / "backbone_high_noise.safetensors"))
    fresh = StoryMemPipeline.from_preset("tiny", lora=False)
    with pytest.raises(NumericalError, match=rf"backbone_high_noise.safetensors: {key} holds NaN or infinite values"):
        fresh.load_storymem_lora(tmp_path / "lora")


def test_a_shot_that_turns_nan_is_an_error_and_not_saved(tmp_path):
    broken = StoryMemPipeline.from_preset("tiny")
    broken.set_progress_bar_config(disable=True)
    with torch.no_grad():
        broken.transformer_2.proj_out.weight.fill_(1e38)  # overflows to inf in the low-noise expert
    with pytest.raises(NumericalError, match="low-noise expert produced NaN or infinite values at step"):
        generate(broken, tmp_path / "run", story=STORY, max_memory=4, sink=1)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    # the first shot (T2V experts) is fine and kept; the broken second one is neither done nor saved
    assert state["completed"] == ["01_01"]
    assert [p.name for p in (tmp_path / "run" / "shots").glob("*.mp4")] == ["01_01.mp4"]


def test_a_pickled_pt_file_gets_our_line_without_unsafe_advice(tmp_path):
    import torch as t

    from storymem.models.lora import read_lora_file

    path = tmp_path / "backbone_high_noise.pt"
    t.save({"weights": np.arange(3)}, path)  # a numpy array: refused by the weights-only loader
    with pytest.raises(LoraError) as info:
        read_lora_file(path)
    assert "(it holds pickled objects, which are not loaded); convert it to .safetensors" in str(info.value)
    assert "weights_only" not in str(info.value)


class _Code:
    def __reduce__(self):  # unpickling it would run a command
        return (os.system, ("true",))


def test_a_pt_lora_holding_pickled_code_is_called_that(tmp_path):
    """torch 2.13 words the refusal "unsupported GLOBAL ... is blocked"; the check must still
    see objects, not a file that is not torch at all."""
    import torch as t

    from storymem.models.lora import read_lora_file

    path = tmp_path / "backbone_high_noise.pt"
    t.save({"lora_A": _Code()}, path)
    with pytest.raises(LoraError) as info:
        read_lora_file(path)
    assert str(info.value) == (
        f"{path}: not a plain weights file (it holds pickled objects, which are not loaded); convert it to .safetensors"
    )


# ---------------------------------------------------------------------------- every command
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["shot", "a fox", "--model", "tiny", "--out", "{tmp}/x.txt"], "--out must name an .mp4 file, got"),
        (["toy-stories", "--out", "{tmp}/file"], "exists and is not a folder"),
        (["train", "--data", "{tmp}", "--out", "{tmp}/t", "--lr", "-1"], "--lr must be a positive number, got -1.0"),
        (
            ["train", "--data", "{tmp}", "--out", "{tmp}/t", "--steps", "0"],
            "--steps must be a whole number of at least 1",
        ),
        (["train", "--data", "{tmp}", "--out", "{tmp}/t", "--p-first", "2"], "--p-first is a probability"),
        (["eval", "{tmp}/run"], "the run state is unreadable or damaged"),
    ],
)
def test_bad_arguments_are_one_line(cli, tmp_path, args, message):
    (tmp_path / "file").write_text("x")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "state.json").write_text("{")
    code, _, err = cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_aesthetic_head_that_is_not_weights_is_one_line(tmp_path):
    from storymem.scoring.quality import load_aesthetic_head

    (tmp_path / "head.pth").write_text("<html>not found</html>")
    with pytest.raises(InputError, match="head.pth: cannot read it as a LAION aesthetic head"):
        load_aesthetic_head(tmp_path / "head.pth")
    save_file({"something": torch.zeros(3)}, str(tmp_path / "head.safetensors"))
    with pytest.raises(InputError, match="head.safetensors: not a LAION aesthetic head"):
        load_aesthetic_head(tmp_path / "head.safetensors")


def test_eval_json_is_strict_and_says_why_a_metric_is_undefined(cli, tmp_path):
    from test_eval import fake_run

    run = fake_run(tmp_path / "one", [np.full((5, 32, 32, 3), 90, np.uint8)])
    code, out, _ = cli("eval", run, "--json", "--extractor", "tiny", "--aesthetic-head", "none")
    assert code == 0
    metrics = json.loads(out, parse_constant=lambda c: pytest.fail(f"bare {c} in the JSON"))
    assert metrics["consistency_overall"] is None
    assert metrics["undefined"]["consistency_overall"] == "one shot: no pairs of shots to compare"


def test_an_error_starts_its_own_line_after_a_progress_bar(capsys):
    from tqdm import tqdm

    from storymem.cli import _error

    bar = tqdm(total=3, file=sys.stderr)
    bar.update(1)
    _error(InputError("broken"))
    err = capsys.readouterr().err
    assert "\nerror: broken\n" in err


# ---------------------------------------------------------------------------- fresh clone
def test_a_clone_without_shared_skips_st_bench_tests_and_ci_requires_them(tmp_path):
    test = "tests/test_story.py::test_all_stbench_scripts_load_with_the_published_counts"
    from conftest import REPO

    env = {**os.environ, "STORYMEM_STBENCH": str(tmp_path / "no-shared")}
    env.pop("STORYMEM_REQUIRE_STBENCH", None)
    skipped = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", test], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout and "without ../shared" in skipped.stdout
    env["STORYMEM_REQUIRE_STBENCH"] = "1"
    required = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", test], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert required.returncode == 1 and "CI requires them" in required.stdout


def test_no_memory_has_no_negative_twin(cli):
    code, _, err = cli("generate", "x.json", "--out", "o", "--no-no-memory")
    assert code == 2 and "No such option: --no-no-memory" in err


def test_a_users_own_story_json_is_never_taken_for_a_skeleton(pipe, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "story.json").write_text(json.dumps(SHORT))
    for how in ({}, {"resume": True}, {"overwrite": True}):
        with pytest.raises(InputError):
            generate(pipe, out, **how)
    assert json.loads((out / "story.json").read_text()) == SHORT
