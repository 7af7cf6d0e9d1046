"""The web app in a real browser: headless Chromium driven by selenium (Debian's chromium and
chromium-driver; `.ci/run` installs them and sets STORYMEM_REQUIRE_BROWSER=1). A failing test
leaves a screenshot in the test's temporary folder and names it."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import PIL.Image
import pytest
import torch

from storymem.app.editor import (
    add_references,
    characters_to_rows,
    check_rows,
    rows_to_characters,
    rows_to_data,
    story_to_rows,
)
from storymem.app.views import list_runs, run_view
from storymem.story import load_story

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "toy-tam.json"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


# ---------------------------------------------------------------- pure parts (no browser)
def test_rows_round_trip_and_errors_name_the_shot_and_field():
    story = load_story(EXAMPLE)
    rows = story_to_rows(story)
    assert len(rows) == 6 and rows[2] == [1, "Tam jumps in the forest, close-up.", False]
    again, error = check_rows(rows, story.story_overview)
    assert error == "" and again.scenes == story.scenes
    rows[4][1] = " \u200b "
    assert check_rows(rows)[1] == "shot 5, prompt: must not be empty (it has no visible characters)"
    rows[4][1], rows[0][2] = "x", False
    assert check_rows(rows)[1].startswith("shot 1, cut: the first shot of a story must be a cut")
    assert check_rows([])[1] == "the story has no shots; add one"
    data = rows_to_data([[1, "a", True], [1, "b", "false"], [2, "c", True]], "o", "n")
    assert data == {
        "scenes": [
            {"scene_num": 1, "video_prompts": ["a", "b"], "cut": [True, False]},
            {"scene_num": 2, "video_prompts": ["c"], "cut": [True]},
        ],
        "story_overview": "o",
        "story_name": "n",
    }


def test_the_characters_table_takes_pictures_and_round_trips(tmp_path):
    image = tmp_path / "tam.png"
    PIL.Image.new("RGB", (24, 40), (120, 120, 120)).save(image)
    rows = add_references([["Tam", "a purple square", None], ["Ole", "", ""], ["", "", ""]], " tam ", [str(image)])
    rows = add_references(rows, "Ada", [str(image), str(image)])  # a new name: a new row
    assert rows == [
        ["Tam", "a purple square", str(image)],
        ["Ole", "", ""],
        ["", "", ""],
        ["Ada", "", f"{image}; {image}"],
    ]
    assert rows_to_characters(rows) == [
        {"name": "Tam", "look": "a purple square", "references": [str(image)]},
        "Ole",
        {"name": "Ada", "references": [str(image), str(image)]},
    ]
    shots = [[1, "Tam walks.", True]]
    story, error = check_rows(shots, characters=rows)
    assert error == "" and characters_to_rows(story) == [rows[0], rows[1], rows[3]]
    gone = str(tmp_path / "gone.png")
    assert check_rows(shots, characters=add_references(rows, "Ole", [gone]))[1] == (
        f"character 2, references: image not found: {gone}"
    )


# ---------------------------------------------------------------- the app in a browser
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser_ready():
    missing = [n for n, p in (("chromium", CHROMIUM), ("chromedriver", DRIVER)) if p is None]
    try:
        import gradio  # noqa: F401
        import selenium  # noqa: F401
    except ImportError as e:
        missing.append(e.name)
    if missing:
        message = f"browser tests need {', '.join(missing)} (Debian: chromium chromium-driver; pip: the dev extra)"
        if os.environ.get("STORYMEM_REQUIRE_BROWSER") == "1":
            pytest.fail(message + "; CI requires them")
        pytest.skip(message)


@pytest.fixture(scope="module")
def app(browser_ready, tmp_path_factory):
    runs = tmp_path_factory.mktemp("app") / "runs"
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "storymem.cli", "app", "--port", str(port), "--runs", str(runs), "--model", "toy"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            break
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.5)
    yield url, runs
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextlib.contextmanager
def browser(tmp_path, name):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1600", f"--user-data-dir={tmp_path / ('chrome-' + name)}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    except BaseException:
        shot = tmp_path / f"failure-{name}.png"
        driver.save_screenshot(str(shot))
        print(f"screenshot of the failure: {shot}")
        raise
    finally:
        driver.quit()


def wait_for(driver, condition, what, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with contextlib.suppress(Exception):
            value = condition(driver)
            if value:
                return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def css(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def text_of(driver, element_id):
    return css(driver, f"#{element_id}")[0].text


def field(driver, element_id):
    return css(driver, f"#{element_id} input, #{element_id} textarea")[0]


def clear(element):
    """Empty a field the way a person does (a plain .clear() fires no input event for the page)."""
    from selenium.webdriver.common.keys import Keys

    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(Keys.DELETE)


def press(driver, find, what):
    """Click what `find` returns, again until it takes: while the page updates a component, its
    loading overlay briefly intercepts clicks (a click that is intercepted does nothing)."""
    wait_for(driver, lambda d: find(d).click() or True, f"a click on {what}", timeout=30)


def click(driver, element_id):
    press(driver, lambda d: css(d, f"#{element_id}")[0], element_id)


def tab(driver, label):
    press(driver, lambda d: [b for b in css(d, "button[role=tab]") if b.text.strip() == label][0], f"tab {label}")


def choose(driver, element_id, option):
    press(driver, lambda d: field(d, element_id), element_id)
    wait_for(driver, lambda d: css(d, f'#{element_id} li[role=option][aria-label="{option}"]'), option)[0].click()


def open_run(driver, url, name):
    """A fresh page, then Runs: refresh the list, choose `name`, open it."""
    driver.get(url)
    wait_for(driver, lambda d: css(d, "#example input"), "the page")
    tab(driver, "Runs")
    click(driver, "refresh-runs")
    choose(driver, "runs-list", name)
    click(driver, "open-run")


def test_load_run_watch_and_edit(app, tmp_path):
    url, runs = app
    with browser(tmp_path, "run") as driver:
        driver.get(url)
        wait_for(driver, lambda d: css(d, "#example input"), "the page")
        choose(driver, "example", "toy-tam")
        click(driver, "load-example")
        wait_for(driver, lambda d: "purple striped square" in text_of(d, "shots-table"), "the story in the table")
        assert field(driver, "story-name").get_attribute("value") == "toy-tam"

        tab(driver, "Run")
        field(driver, "run-name").send_keys("tam")
        click(driver, "start")
        wait_for(driver, lambda d: "finished: tam (6 shots)" in text_of(d, "run-status"), "the run to finish")
        wait_for(driver, lambda d: len(css(d, "#shot-videos video")) == 6, "six shot videos")
        state = json.loads((runs / "tam" / "state.json").read_text())
        keyframes = len(state["memory"]["sink_keyframes"]) + len(state["memory"]["window_keyframes"])
        assert keyframes >= 1
        wait_for(driver, lambda d: len(css(d, "#memory img")) == keyframes, "the memory thumbnails")
        captions = text_of(driver, "memory")
        assert "sink · shot 01_01, frame" in captions
        wait_for(driver, lambda d: css(d, "#storyboard img"), "the storyboard")
        wait_for(driver, lambda d: css(d, "#story-video video"), "the story video")
        assert "shots 6 / 6" in text_of(driver, "run-status")
        if os.environ.get("STORYMEM_APP_SCREENSHOT"):  # the README's picture
            driver.set_window_size(1400, 1250)
            driver.save_screenshot(os.environ["STORYMEM_APP_SCREENSHOT"])

        # a prompt edited to empty: refused, with the error beside the prompt
        tab(driver, "Story")
        number = field(driver, "shot-number")
        clear(number)
        number.send_keys("2")
        wait_for(driver, lambda d: field(d, "shot-prompt").get_attribute("value") == "Tam walks in the forest, close-up.",
                 "shot 2 in the editor")  # fmt: skip
        clear(field(driver, "shot-prompt"))
        click(driver, "apply-shot")
        wait_for(driver, lambda d: "shot 2, prompt: must not be empty" in text_of(d, "shot-error"), "the error")
        assert "Tam walks in the forest, close-up." in text_of(driver, "shots-table")  # not applied

        # and a bad run name is one line in the page, with nothing started
        tab(driver, "Run")
        clear(field(driver, "run-name"))
        field(driver, "run-name").send_keys("../outside")
        click(driver, "start")
        wait_for(driver, lambda d: "must be a folder name inside" in text_of(d, "run-message"), "the refusal")
    assert list_runs(runs) == ["tam"]


def scene_cells(driver) -> list[str]:
    """The scene column of the shots table, as shown."""
    return [line.strip() for line in text_of(driver, "shots-table").splitlines() if line.strip() in ("1", "2", "3")]


def test_write_a_story_from_an_idea_into_the_editor(app, tmp_path):
    """The Story tab's "Write from an idea": the tiny language model's story fills the table and
    the characters, editable before it runs; a bad idea is the CLI's line in the page."""
    url, _ = app
    with browser(tmp_path, "write") as driver:
        driver.get(url)
        wait_for(driver, lambda d: css(d, "#idea textarea, #idea input"), "the page")
        idea = field(driver, "idea")
        idea.send_keys("a fox and a crow")
        field(driver, "idea-characters").send_keys("Tam, Ole")
        shots = field(driver, "idea-shots")
        clear(shots)
        shots.send_keys("3")
        llm = field(driver, "idea-llm")
        clear(llm)
        llm.send_keys("tiny")
        click(driver, "write-story")
        wait_for(driver, lambda d: "Ole" in text_of(d, "characters"), "the characters")
        assert text_of(driver, "characters").index("Tam") < text_of(driver, "characters").index("Ole")
        wait_for(driver, lambda d: scene_cells(d) == ["1", "1", "2"], "three shots in two scenes in the table")
        clear(field(driver, "idea"))
        click(driver, "write-story")
        wait_for(driver, lambda d: "IDEA must not be empty" in text_of(d, "idea-error"), "the refusal")
        assert scene_cells(driver) == ["1", "1", "2"]  # the written story stays

        # a picture of Tam: uploaded, then added to Tam's row of the Characters table
        picture = tmp_path / "tam-front.png"
        PIL.Image.new("RGB", (24, 40), (150, 60, 200)).save(picture)
        field(driver, "cast-name").send_keys("Tam")
        css(driver, "#cast-files input[type=file]")[0].send_keys(str(picture))
        wait_for(driver, lambda d: "tam-front" in text_of(d, "cast-files"), "the upload")
        click(driver, "cast-add")
        wait_for(driver, lambda d: "tam-front.png" in text_of(d, "characters"), "the picture in Tam's row")
        assert text_of(driver, "story-errors").strip() == ""


def test_reopen_an_interrupted_run_resume_it_and_close_the_tab(app, tmp_path):
    url, runs = app
    out = runs / "killed"
    args = [sys.executable, "-m", "storymem.cli", "generate", EXAMPLE, "--out", out, "--model", "toy", "--steps", "12"]
    proc = subprocess.Popen(list(map(str, args)), start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    wait_for(None, lambda _: len(run_view(out)["shots"]) >= 2, "two shots of the CLI run", timeout=240)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in (out / "shots").glob("*.mp4")}
    assert 2 <= len(done) < 6

    with browser(tmp_path, "resume") as driver:
        open_run(driver, url, "killed")
        wait_for(driver, lambda d: "interrupted: killed" in text_of(d, "run-status"), "the interrupted run")
        assert len(css(driver, "#shot-videos video")) == len(done)
        click(driver, "resume")
        wait_for(driver, lambda d: "running" in text_of(d, "run-status") or "queued" in text_of(d, "run-status"),
                 "the resumed run")  # fmt: skip
    # the tab is closed; the run goes on in the app
    wait_for(None, lambda _: run_view(out)["finished"], "the run to finish without a browser", timeout=240)
    assert {p: (out / "shots" / p).stat().st_mtime_ns for p in done} == done  # not made again
    with browser(tmp_path, "reopen") as driver:
        open_run(driver, url, "killed")
        wait_for(driver, lambda d: "finished: killed (6 shots)" in text_of(d, "run-status"), "the finished run")
        wait_for(driver, lambda d: len(css(d, "#shot-videos video")) == 6, "six shot videos")
        tab(driver, "Runs")
        click(driver, "evaluate")
        wait_for(driver, lambda d: "identity" in text_of(d, "metrics"), "the eval table with identity")
        choose(driver, "compare-left", "killed")
        choose(driver, "compare-right", "killed")
        click(driver, "compare")
        wait_for(driver, lambda d: len(css(d, "#compare-videos video")) == 2, "two videos side by side")


def test_steer_the_memory_and_reshoot_a_shot_in_the_page(app, tmp_path):
    """The Run tab directs a run: click a memory picture, pin it, then drop it; reshoot shot 2
    with a new prompt, see the new take among the shots, switch back to the first."""
    url, runs = app
    out = runs / "direct"
    args = [sys.executable, "-m", "storymem.cli", "generate", EXAMPLE, "--out", out, "--model", "toy", "--steps", "4"]
    subprocess.run(list(map(str, args)), check=True, capture_output=True)
    with browser(tmp_path, "direct") as driver:
        open_run(driver, url, "direct")
        wait_for(driver, lambda d: "finished: direct (6 shots)" in text_of(d, "run-status"), "the run")
        wait_for(driver, lambda d: css(d, "#memory img"), "the memory pictures")
        press(driver, lambda d: css(d, "#memory img")[0], "the first memory picture")
        wait_for(driver, lambda d: field(d, "keyframe").get_attribute("value"), "its name in the keyframe field")
        name = field(driver, "keyframe").get_attribute("value")
        click(driver, "pin")
        wait_for(driver, lambda d: f"pin {name}: from the next shot on" in text_of(d, "direct-message"), "the pin")
        wait_for(driver, lambda d: "pinned" in text_of(d, "memory"), "the pinned mark")
        click(driver, "drop")
        wait_for(driver, lambda d: f"drop {name}" in text_of(d, "direct-message"), "the drop")
        wait_for(
            driver, lambda d: "dropped" in text_of(d, "memory") and "pinned" not in text_of(d, "memory"), "the mark"
        )

        field(driver, "reshoot-shot").send_keys("2")
        field(driver, "reshoot-prompt").send_keys("Tam rests in the forest.")
        click(driver, "reshoot")
        # the only keyframe was dropped, so the new take is drawn from text; the later shots are stale
        wait_for(driver, lambda d: "01_02 · T2V · take 2" in text_of(d, "shot-videos"), "the new take", timeout=240)
        assert "01_03 · MI2V · stale" in text_of(driver, "shot-videos")
        number = field(driver, "take-number")
        clear(number)
        number.send_keys("1")
        click(driver, "use-take")
        wait_for(driver, lambda d: "shot 01_02: take 1 in use" in text_of(d, "direct-message"), "the switch back")
    state = json.loads((out / "state.json").read_text())
    assert [(e["op"], e["file"]) for e in state["edits"]] == [
        ("pin", f"memory/{name}.png"),
        ("drop", f"memory/{name}.png"),
    ]
    assert state["shots"]["01_02"]["take"] == 1 and [t["prompt"] for t in state["takes"]["01_02"]] == [
        "Tam walks in the forest, close-up.",
        "Tam rests in the forest.",
    ]


def test_step_callback_reports_every_step(tiny_pipe):
    """diffusers' callback_on_step_end: after each step, with the latents; what it returns is used."""
    seen = []

    def on_step(pipe, step, timestep, tensors):
        seen.append((step + 1, pipe.num_timesteps))
        return {"latents": tensors["latents"] * 0} if step == 2 else tensors

    latents = tiny_pipe.generate_shot(
        "a fox", seed=0, num_inference_steps=3, output_type="latent", callback_on_step_end=on_step
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert torch.count_nonzero(latents) == 0  # the last step's latents were replaced
