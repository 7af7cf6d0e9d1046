"""Many stories at once: `bench --workers` and `generate --workers` run each job as a Ray task
(one CPU core each for the tiny model). Ray starts a local cluster: these tests take ~1 min."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'storymem[ray]')")

# One local Ray cluster at a time: under `pytest -n`, these tests share one worker.
pytestmark = pytest.mark.xdist_group("ray")

BENCH = ["--model", "tiny", "--methods", "storymem,chain", "--extractor", "tiny", "--aesthetic-head", "none"]


def write_stories(folder, count=4):
    folder.mkdir()
    for i in range(count):
        story = {
            "story_overview": f"story {i}",
            "scenes": [
                {
                    "scene_num": 1,
                    "video_prompts": [f"a fox {i} walks", f"the fox {i} jumps", "the fox sleeps"],
                    "cut": [True, False, True],
                }
            ],
        }
        (folder / f"s{i}.json").write_text(json.dumps(story))
    return folder


def storymem(*args, **kw):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "storymem.cli", *map(str, args)], env=env, text=True, **kw)


def test_bench_workers_survives_a_killed_worker_and_equals_a_serial_run(tmp_path, cli):
    stories = write_stories(tmp_path / "stories")
    code, _, err = cli("bench", stories, "--out", tmp_path / "serial", *BENCH, "--steps", "4")
    assert code == 0, err

    out = tmp_path / "par"
    proc = storymem("bench", stories, "--out", out, *BENCH, "--steps", "4", "--workers", "2",
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    # Kill the worker process of the first run that has a finished shot and is still going.
    victim, deadline = None, time.time() + 300
    while victim is None and time.time() < deadline and proc.poll() is None:
        for lock in out.glob("runs/*/*/.storymem.lock"):
            state = lock.parent / "state.json"
            try:
                completed = json.loads(state.read_text())["completed"]
                pid = int(lock.read_text().split()[1])
            except (OSError, ValueError, KeyError, IndexError):
                continue
            if 1 <= len(completed) < 3:
                victim = (
                    lock.parent,
                    pid,
                    {n: (lock.parent / "shots" / f"{n}.mp4").stat().st_mtime_ns for n in completed},
                )
                os.kill(pid, signal.SIGKILL)
                break
        time.sleep(0.01)
    stdout, stderr = proc.communicate(timeout=600)
    assert victim is not None, "no run was caught between its shots"
    assert proc.returncode == 0, stderr[-3000:]
    run, pid, done = victim
    # Ray ran the task again; it resumed: the shots finished before the kill were not made again
    assert {n: (run / "shots" / f"{n}.mp4").stat().st_mtime_ns for n in done} == done
    assert json.loads((run / "state.json").read_text())["finished"]
    assert "24 shots generated, 8 runs evaluated" not in stdout  # some shots were never redone
    assert (out / "results.csv").read_bytes() == (tmp_path / "serial" / "results.csv").read_bytes()


def test_generate_several_stories_one_after_another(tmp_path, cli):
    """The same job list as `--workers` (Ray is covered by the bench test), run in this process."""
    stories = write_stories(tmp_path / "stories", count=2)
    args = ("generate", stories, "--out", tmp_path / "runs", "--model", "tiny", "--steps", "3")
    code, stdout, err = cli(*args)
    assert code == 0, err
    assert stdout.startswith("2 stories (6 shots generated)")
    for name in ("s0", "s1"):
        assert json.loads((tmp_path / "runs" / name / "state.json").read_text())["finished"]
    # again, naming the files: nothing left to do
    code, stdout, _ = cli(*args[:1], stories / "s0.json", stories / "s1.json", *args[2:])
    assert code == 0 and stdout.startswith("2 stories (0 shots generated)")


def test_worker_errors_are_one_line(tmp_path, cli):
    stories = write_stories(tmp_path / "stories", count=1)
    code, _, err = cli("bench", stories, "--out", tmp_path / "b", *BENCH, "--workers", "0")
    assert (code, err) == (1, "error: --workers must be at least 1, got 0\n")
    code, _, err = cli("bench", stories, "--out", tmp_path / "b", *BENCH, "--ray-address", "ray://nowhere:1")
    assert (code, err) == (1, "error: --ray-address needs --workers N (how many runs at once)\n")
    code, _, err = cli("generate", stories, "--out", tmp_path / "g", "--model", "tiny", "--overwrite")
    assert code == 1 and err.startswith("error: --overwrite works on one story; with several")
    assert not (tmp_path / "b").exists() and not (tmp_path / "g").exists()
