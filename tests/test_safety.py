"""Nothing lost, nothing mixed: runs inside runs, resumes on other weights, damaged weight files,
batches with a failing story, names typed differently, the app's flags, and the leftovers.
Each data-loss case checks that every file present before is still there, unchanged, after."""

import json
import shutil
import time
import unicodedata
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import REPO
from storymem import InputError, StoryError, parse_story
from storymem.memory.entity import named_characters
from test_acceleration import write_preview
from test_real_weights import SMALL, STORY, folders  # noqa: F401 (a fixture)

TINY = ["--model", "tiny", "--steps", "2"]


def story_file(folder: Path, name: str = "story", data=STORY) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------- 1. runs inside runs
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished single-story run of the tiny model (made through the CLI)."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("finished")
    story = story_file(root, "story")
    out = root / "run"
    cmd = [sys.executable, "-m", "storymem.cli", "generate", str(story), "--out", str(out), *TINY]
    assert subprocess.run(cmd, capture_output=True, text=True).returncode == 0
    return out


def test_several_stories_into_a_run_folder_are_refused_and_nothing_changes(finished_run, tmp_path, cli):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = files_of(run)
    a, b = story_file(tmp_path / "s", "a"), story_file(tmp_path / "s", "b")
    code, _, err = cli("generate", a, b, "--out", run, *TINY)
    assert code == 1 and err.startswith(f"error: --out {run}: is the run folder of one story")
    assert files_of(run) == before
    code, _, err = cli("bench", a, "--out", run, *TINY, "--methods", "independent")
    assert code == 1 and "is the run folder of one story" in err and files_of(run) == before


def test_a_run_never_goes_inside_another_nor_overwrites_a_folder_of_runs(finished_run, tmp_path, cli):
    story = story_file(tmp_path / "s")
    runs = tmp_path / "runs"
    shutil.copytree(finished_run, runs / "first")
    before = files_of(runs)
    for out, extra in ((runs, ["--overwrite"]), (runs, ["--resume"]), (runs / "first" / "inner", [])):
        code, _, err = cli("generate", story, "--out", out, *TINY, *extra)
        assert code == 1 and len(err.strip().splitlines()) == 1, (out, extra, err)
        assert "holds other runs" in err or "is inside the run folder" in err, err
        assert files_of(runs) == before
    # a run folder that already holds a run (made by an older version) is never overwritten whole
    shutil.copytree(finished_run, runs / "first" / "nested")
    before = files_of(runs)
    code, _, err = cli("generate", story, "--out", runs / "first", *TINY, "--overwrite")
    assert code == 1 and "holds other runs" in err and files_of(runs) == before


def test_toy_stories_never_replace_an_edited_story_without_overwrite(tmp_path, cli):
    out = tmp_path / "stories"
    assert cli("toy-stories", "--out", out, "--count", "2")[0] == 0
    edited = out / "toy-0001.json"
    data = json.loads(edited.read_text())
    data["story_name"] = "my own"
    edited.write_text(json.dumps(data))
    before = files_of(out)
    code, _, err = cli("toy-stories", "--out", out, "--count", "3")
    assert code == 1 and err.startswith(f"error: {edited}: exists with other contents")
    assert files_of(out) == before  # not even toy-0002 was written
    code, stdout, _ = cli("toy-stories", "--out", out, "--count", "2", "--seed", "0")
    assert code == 1  # the same command again still refuses the edited file
    code, stdout, _ = cli("toy-stories", "--out", out, "--count", "3", "--overwrite")
    assert code == 0 and json.loads(edited.read_text())["story_name"] == "toy-0001"
    code, stdout, _ = cli("toy-stories", "--out", out, "--count", "3")
    assert code == 0 and "wrote 0 toy stories" in stdout  # the same stories: nothing to do


# ---------------------------------------------------------------------------- 3. resumes on other weights
def toy_weights_copy(folder: Path, change: bool = False) -> Path:
    shutil.copytree(REPO / "src" / "storymem" / "toyworld" / "weights", folder)
    if change:  # the same names and shapes, other values: another training
        state = {
            k: v + 1e-3 if v.is_floating_point() else v for k, v in load_file(str(folder / "base.safetensors")).items()
        }
        (folder / "base.safetensors").unlink()
        save_file(state, str(folder / "base.safetensors"))
    return folder


def test_a_resume_on_other_weights_is_refused_and_the_same_files_elsewhere_accepted(tmp_path, cli):
    story = story_file(tmp_path / "s", "toy", json.loads((REPO / "examples" / "toy-tam.json").read_text()))
    a = toy_weights_copy(tmp_path / "a")
    same = toy_weights_copy(tmp_path / "elsewhere")
    other = toy_weights_copy(tmp_path / "other", change=True)
    out = tmp_path / "run"
    args = ["generate", story, "--out", out, "--steps", "2"]
    assert cli(*args, "--weights", a)[0] == 0
    before = files_of(out)
    code, _, err = cli(*args, "--weights", other, "--resume")
    assert code == 1 and "the run was made with other weights than these (--weights / --i2v: other files)" in err
    assert files_of(out) == before
    code, _, err = cli(*args, "--weights", same, "--resume")  # the same files at another path
    assert code == 0, err
    code, _, err = cli(*args, "--weights", a, "--resume", "--lora", other / "lora")
    assert code == 0, err  # the same LoRA files at another path: accepted too


def test_a_resume_with_another_keyframe_clip_is_refused(folders, tmp_path, cli):  # noqa: F811
    from storymem.scoring import ClipImageEmbedder

    clip_a, clip_b = tmp_path / "clip-a", tmp_path / "clip-b"
    shutil.copytree(folders.root / "clip", clip_a)
    ClipImageEmbedder.tiny(seed=1).model.save_pretrained(clip_b)
    story = story_file(tmp_path / "s")
    out = tmp_path / "run"
    args = ["generate", story, "--out", out, *TINY]
    assert cli(*args, "--keyframe-clip", clip_a)[0] == 0
    code, _, err = cli(*args, "--keyframe-clip", clip_b, "--resume")
    assert code == 1 and "(--keyframe-clip: other files)" in err
    shutil.copytree(clip_a, tmp_path / "clip-a2")
    assert cli(*args, "--keyframe-clip", tmp_path / "clip-a2", "--resume")[0] == 0


def test_a_resume_with_other_real_weights_names_the_option(folders, tmp_path, cli):  # noqa: F811
    w = folders.root
    story = story_file(tmp_path / "s")
    i2v_moved = tmp_path / "moved-i2v"
    shutil.copytree(w / "i2v", i2v_moved)
    t2v_other = tmp_path / "other-t2v"
    shutil.copytree(w / "t2v", t2v_other)
    config = json.loads((t2v_other / "transformer" / "config.json").read_text())
    config["eps"] = 1e-5  # another model's config, the same tensors
    (t2v_other / "transformer" / "config.json").write_text(json.dumps(config))
    out = tmp_path / "run"
    base = ["generate", story, "--out", out, "--model", "wan2.2-a14b", "--lora", w / "lora"]
    base += [*SMALL, "--keyframe-clip", w / "clip"]
    assert cli(*base, "--i2v", w / "i2v", "--t2v", w / "t2v")[0] == 0
    code, _, err = cli(*base, "--i2v", w / "i2v", "--t2v", t2v_other, "--resume")
    assert code == 1 and "(--t2v: other files)" in err
    assert cli(*base, "--i2v", i2v_moved, "--t2v", w / "t2v", "--resume")[0] == 0


# ---------------------------------------------------------------------------- 4. damaged weight files
def cut(file: Path, keep: float = 0.5) -> Path:
    with open(file, "r+b") as f:
        f.truncate(int(file.stat().st_size * keep))
    return file


@pytest.mark.parametrize(
    "damaged",
    [
        "i2v/transformer/diffusion_pytorch_model.safetensors",
        "i2v/transformer_2/diffusion_pytorch_model.safetensors",
        "i2v/text_encoder/model.safetensors",
        "i2v/vae/diffusion_pytorch_model.safetensors",
        "t2v/transformer/diffusion_pytorch_model.safetensors",
        "lora/backbone_low_noise.safetensors",
        "clip/model.safetensors",
    ],
)
def test_a_weight_file_cut_short_is_one_line_naming_it_and_how_to_fetch_it(
    folders,  # noqa: F811
    tmp_path,
    cli,
    damaged,
    monkeypatch,
):
    from storymem.pipelines import StoryMemPipeline

    w = tmp_path / "w"
    shutil.copytree(folders.root, w)
    cut(w / damaged)
    loads = []
    monkeypatch.setattr(StoryMemPipeline, "from_options", classmethod(lambda cls, *a, **k: loads.append(1)))
    story = story_file(tmp_path / "s")
    args = ["generate", story, "--out", tmp_path / "run", "--model", "wan2.2-a14b", "--lora", w / "lora"]
    code, _, err = cli(*args, "--i2v", w / "i2v", "--t2v", w / "t2v", "--keyframe-clip", w / "clip", *SMALL)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert str(w / damaged) in lines[0] and "cut short" in lines[0] and "fetch it again with: hf download" in lines[0]
    assert loads == []  # found before any model loads, the keyframe CLIP included
    assert not (tmp_path / "run").exists()


def test_clip_folders_without_or_with_a_wrong_config_are_one_line(folders, tmp_path, cli):  # noqa: F811
    story = story_file(tmp_path / "s")
    missing, foreign = tmp_path / "no-config", tmp_path / "bert"
    shutil.copytree(folders.root / "clip", missing)
    (missing / "config.json").unlink()
    shutil.copytree(folders.root / "clip", foreign)
    (foreign / "config.json").write_text(json.dumps({"model_type": "bert"}))
    other = tmp_path / "other-shapes"  # a CLIP config that does not match its weights
    shutil.copytree(folders.root / "clip", other)
    config = json.loads((other / "config.json").read_text())
    config["hidden_size"] = 48
    (other / "config.json").write_text(json.dumps(config))
    cases = (
        (missing, "config.json: missing or unreadable"),
        (foreign, "holds a bert model, not CLIP"),
        (other, "cannot load it as CLIP (its weights have other shapes than its config.json says)"),
    )
    for folder, message in cases:
        code, _, err = cli("generate", story, "--out", tmp_path / "run", *TINY, "--keyframe-clip", folder)
        assert code == 1 and len(err.strip().splitlines()) == 1 and message in err, err
        assert "fetch" in err and not (tmp_path / "run").exists()


def test_damaged_toy_and_preview_weights_are_one_line(tmp_path, cli):
    from storymem.pipelines import StoryMemPipeline

    story = story_file(tmp_path / "s")
    toy = toy_weights_copy(tmp_path / "toy")
    cut(toy / "base.safetensors")
    code, _, err = cli("generate", story, "--out", tmp_path / "run", "--weights", toy)
    assert code == 1 and f"{toy / 'base.safetensors'}: toy model weights is cut short" in err
    tiny = StoryMemPipeline.from_preset("tiny")
    preview = write_preview(tmp_path / "lightning", tiny)
    damaged = preview / "Wan2.2-I2V-A14B-4steps-lora-rank64-Seko-V1" / "low_noise_model.safetensors"
    cut(damaged, 0.3)
    code, _, err = cli("generate", story, "--out", tmp_path / "run", *TINY, "--preview", preview)
    assert code == 1 and str(damaged) in err and "fetch it again with: hf download lightx2v/Wan2.2-Lightning" in err


def test_a_local_path_is_never_offered_as_a_hub_id(tmp_path, monkeypatch):
    from storymem import hub

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    assert not hub.is_hub_id("models/Wan2.2-I2V-A14B-Diffusers")  # its parent folder is here: a path
    assert not hub.is_hub_id("./Wan-AI/x")
    assert hub.is_hub_id("Wan-AI/Wan2.2-I2V-A14B-Diffusers")


# ---------------------------------------------------------------------------- 5. batches
def bad_reference_story(folder: Path) -> Path:
    (folder / "ref.png").write_text("not an image")
    return story_file(folder, "b", {**STORY, "references": ["ref.png"]})


def test_a_failing_story_does_not_stop_the_others(tmp_path, cli):
    good = story_file(tmp_path / "s", "a")
    bad = bad_reference_story(tmp_path / "s")
    code, stdout, err = cli("generate", good, bad, "--out", tmp_path / "runs", *TINY)
    assert code == 1
    assert json.loads((tmp_path / "runs" / "a" / "state.json").read_text())["finished"]
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert (
        len(errors) == 1
        and errors[0].startswith("error: b/storymem: ")
        and "ref.png: not a readable image" in errors[0]
    )
    assert err.strip().splitlines()[-1].startswith("1 of 2 runs failed") and stdout.startswith("1 stories")
    code, stdout, err = cli("bench", good, bad, "--out", tmp_path / "bench", *TINY, "--methods", "storymem")
    assert code == 1 and "error: b/storymem: " in err and (tmp_path / "bench" / "results.csv").is_file()


@pytest.mark.xdist_group("ray")
def test_a_failing_story_does_not_stop_the_ray_workers(tmp_path, cli):
    good = story_file(tmp_path / "s", "a")
    bad = bad_reference_story(tmp_path / "s")
    code, _, err = cli("generate", good, bad, "--out", tmp_path / "runs", *TINY, "--workers", "2")
    assert code == 1 and "error: b/storymem: " in err and "ref.png: not a readable image" in err
    assert json.loads((tmp_path / "runs" / "a" / "state.json").read_text())["finished"]


def test_an_unreachable_ray_address_is_one_line_within_its_timeout(tmp_path, cli):
    story = story_file(tmp_path / "s", "a")
    start = time.perf_counter()
    code, _, err = cli(
        "generate", story, "--out", tmp_path / "runs", *TINY, "--workers", "1", "--ray-address", "ray://127.0.0.1:1"
    )
    assert code == 1 and err.startswith(
        "error: --ray-address ray://127.0.0.1:1: nothing answers at 127.0.0.1:1 within 10 s"
    )
    assert time.perf_counter() - start < 30


# ---------------------------------------------------------------------------- 6. names
def test_names_are_matched_trimmed_composed_and_case_folded():
    composed, combining = "Zo\u00eb", unicodedata.normalize("NFD", "Zo\u00eb")
    assert composed != combining
    assert named_characters(f"{combining} waves at TAM.", [" Tam ", composed]) == {"tam", "zo\u00eb"}
    story = {"scenes": [{"scene_num": 1, "video_prompts": ["x"], "cut": [True]}]}
    for names in ([" Tam ", "tam"], [composed, combining], ["STRASSE", "straße"]):
        with pytest.raises(StoryError, match=r"characters\[1\]: .* is listed twice"):
            parse_story({**story, "characters": names})


# ---------------------------------------------------------------------------- 7. the app's flags
@pytest.mark.parametrize("port", ["0", "70000", "-5"])
def test_app_ports_out_of_range_are_one_line(cli, tmp_path, port):
    code, _, err = cli("app", "--port", port, "--runs", tmp_path / "runs")
    assert (code, err) == (1, f"error: --port must be a port number from 1 to 65535, got {port}\n")


def test_app_runs_pointing_at_a_file_is_one_line(cli, tmp_path):
    file = tmp_path / "runs.txt"
    file.write_text("mine")
    code, _, err = cli("app", "--runs", file)
    assert code == 1 and err.startswith(f"error: --runs {file}: is a file") and file.read_text() == "mine"


# ---------------------------------------------------------------------------- 8. leftovers
@pytest.mark.parametrize("prompt", ["", "   ", "\u200b\u200b"])
def test_a_shot_without_visible_prompt_is_refused(cli, tmp_path, prompt):
    out = tmp_path / "shot.mp4"
    code, _, err = cli("shot", prompt, "--out", out, *TINY)
    assert code == 1 and "PROMPT must not be empty (it has no visible characters)" in err and not out.exists()
    from storymem.pipelines import StoryMemPipeline

    with pytest.raises(InputError, match="the prompt must not be empty"):
        StoryMemPipeline.from_preset("tiny").generate_shot(prompt)


def test_a_resume_of_an_edited_story_names_the_changed_shots(finished_run, tmp_path, cli):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    edited = json.loads(json.dumps(STORY))
    edited["scenes"][0]["video_prompts"][1] = "a fox flies"
    edited["scenes"][0]["video_prompts"].append("a fox dreams")
    edited["scenes"][0]["cut"].append(True)
    story = story_file(tmp_path / "s", "story", edited)
    code, _, err = cli("generate", story, "--out", run, *TINY, "--resume")
    assert code == 1 and "the story changed since the run started (shot 01_02's prompt, shot 01_04 added)" in err


def test_weight_fingerprints_ignore_the_path_and_see_a_changed_header(tmp_path):
    from storymem.weights import fingerprint

    a = toy_weights_copy(tmp_path / "a")
    b = toy_weights_copy(tmp_path / "b")
    c = toy_weights_copy(tmp_path / "c", change=True)
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(c)  # the same names, shapes and size: other values
    (b / "lora" / "extra.json").write_text("{}")
    assert fingerprint(a) != fingerprint(b)


def test_torch_weight_files_cut_short_are_one_line_with_where_to_fetch_them(tmp_path):
    """The evaluation's .pth files (the LAION aesthetic head, the ViCLIP checkpoint) too."""
    from storymem.eval import ViClip, load_viclip
    from storymem.scoring.quality import load_aesthetic_head
    from test_viclip import SMALL as VICLIP_SMALL

    head = tmp_path / "sa_0_4_vit_l_14_linear.pth"
    torch.save(torch.nn.Linear(16, 1).state_dict(), head)
    viclip = tmp_path / "ViClip-InternVid-10M-FLT.pth"
    torch.save({"model": ViClip(VICLIP_SMALL).state_dict()}, viclip)
    for file, load, source in (
        (head, load_aesthetic_head, "aesthetic-predictor"),
        (viclip, load_viclip, "OpenGVLab/ViCLIP"),
    ):
        cut(file)
        with pytest.raises(InputError) as info:
            load(file)
        message = str(info.value)
        assert message.startswith(f"{file}: cannot read it as") and "fetch it again with: download it from" in message
        assert source in message and "\n" not in message
