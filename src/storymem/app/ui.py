"""The page: Story (edit a script), Run (make it and watch), Runs (reopen, resume, compare, eval).

Everything shown of a run is read back from its run folder every second (`views.run_view`), so a
run started in another tab, by the CLI, or before a restart looks the same. Generation goes
through one queue per app process (`jobs.Generator`).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import gradio as gr

from ..direct import Run
from ..errors import StoryMemError
from ..models.presets import PRESETS
from ..options import MODE_CHOICES, POLICIES, PipelineOptions, RunSettings
from ..story import load_story
from ..write import DEFAULT_LLM
from .editor import (
    CHARACTER_COLUMNS,
    COLUMNS,
    add_references,
    characters_to_rows,
    check_rows,
    rows_to_data,
    story_to_rows,
)
from .jobs import Generator, Job
from .views import list_runs, run_view


def _bar(label: str, done: int, total: int) -> str:
    share = 100 * done / total if total else 0
    return (
        f'<div class="sm-bar"><span>{label} {done} / {total}</span>'
        f'<div class="sm-track"><div class="sm-fill" style="width:{share:.0f}%"></div></div></div>'
    )


CSS = """
.sm-bar { margin: 4px 0; } .sm-bar span { font-size: 0.9em; }
.sm-track { background: #e5e7eb; border-radius: 4px; height: 10px; }
.sm-fill { background: #6366f1; border-radius: 4px; height: 10px; }
#shot-error, #story-errors, #idea-error { color: #b91c1c; }
"""


def build_app(
    generator: Generator,
    runs_root: Path,
    examples: dict[str, Path],
    options: PipelineOptions | None = None,
    settings: RunSettings | None = None,
) -> gr.Blocks:
    """options, settings: the defaults (the `storymem app` flags); the Run tab changes the
    model, memory mode and preview of the one, the seed and steps of the other."""
    runs_root = Path(runs_root)
    options, settings = options or PipelineOptions(), settings or RunSettings()

    def load_example(name):
        if not name or name not in examples:
            return gr.update(), gr.update(), gr.update(), gr.update(), "choose an example or an ST-Bench script first"
        return _load(examples[name])

    def load_upload(file):
        if file is None:
            return gr.update(), gr.update(), gr.update(), gr.update(), ""
        return _load(Path(file))

    def _load(path: Path):
        try:
            story = load_story(path)
        except StoryMemError as e:
            return gr.update(), gr.update(), gr.update(), gr.update(), str(e)
        return _shown(story, story.story_name or path.stem)

    def _shown(story, name):
        return story_to_rows(story), story.story_overview or "", name, characters_to_rows(story), ""

    def write_idea(idea, llm, shots, names):
        """A story from an idea (`storymem write`), into the editor: editable before it runs."""
        from ..story import parse_story
        from ..write import write_story

        cast = [n.strip() for n in (names or "").split(",") if n.strip()]
        try:
            count = int(shots or 6)
            data = write_story(idea or "", shots=count, scenes=min(2, count), characters=cast, llm=llm or DEFAULT_LLM)
            story = parse_story(data)
        except StoryMemError as e:
            return gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), f"error: {e}"
        return (*_shown(story, story.story_name), "")

    def rows_of(table) -> list[list]:
        values = table.values.tolist() if hasattr(table, "values") else list(table or [])
        return [list(r) for r in values if any(str(v).strip() not in ("", "nan", "None") for v in r)]

    def validate(table, overview, characters):
        return check_rows(rows_of(table), overview, rows_of(characters))[1]

    def add_pictures(characters, character, files):
        """The uploaded images become the named character's references (the upload box empties)."""
        return add_references(rows_of(characters), character, [str(Path(f)) for f in files or []]), None

    def pick_shot(table, number):
        rows = rows_of(table)
        i = int(number or 1) - 1
        if not 0 <= i < len(rows):
            return gr.update(), gr.update(), f"shot {number}: there are {len(rows)} shots"
        return rows[i][1], bool(rows[i][2]), ""

    def apply_shot(table, overview, number, prompt, cut):
        rows = rows_of(table)
        i = int(number or 1) - 1
        if not 0 <= i < len(rows):
            return gr.update(), f"shot {number}: there are {len(rows)} shots", gr.update()
        edited = [r[:] for r in rows]
        edited[i][1], edited[i][2] = prompt, cut
        story, error = check_rows(edited, overview)
        if story is None and error.startswith(f"shot {i + 1}, "):
            return gr.update(), error, error  # refused: the field's own error, beside it
        return edited, "", error

    def add_shot(table, number):
        rows = rows_of(table)
        scene = rows[-1][0] if rows else 1
        rows.insert(int(number or len(rows)), [scene, "", True])
        return rows

    def remove_shot(table, number):
        rows = rows_of(table)
        i = int(number or 1) - 1
        if 0 <= i < len(rows):
            rows.pop(i)
        return rows

    def move_up(table, number):
        rows = rows_of(table)
        i = int(number or 1) - 1
        if 1 <= i < len(rows):
            rows[i - 1], rows[i] = rows[i], rows[i - 1]
            return rows, i
        return rows, number

    def save_story(table, overview, name, characters):
        data = rows_to_data(rows_of(table), overview, name or "", rows_of(characters))
        folder = Path(tempfile.mkdtemp(prefix="storymem-story-"))
        path = folder / f"{(name or 'story').strip().replace('/', '_') or 'story'}.json"
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return str(path)

    def start(
        table, overview, name, characters, references, model, memory_mode, policy, preview, seed, steps, run_name
    ):
        story, error = check_rows(rows_of(table), overview, rows_of(characters))
        if story is None:
            return gr.update(), f"error: {error}"
        run_name = (run_name or name or "story").strip()
        run_dir = (runs_root / run_name).resolve()
        if runs_root.resolve() not in run_dir.parents:
            return gr.update(), f"error: run name {run_name!r}: must be a folder name inside {runs_root}"
        if (run_dir / "state.json").is_file():
            return (
                gr.update(),
                f"error: {run_dir}: a run of that name exists; open it in Runs to resume it, or choose another name",
            )
        try:
            refs = [str(Path(f)) for f in references] if references else None
            chosen = settings.replace(
                seed=int(seed or 0), steps=int(steps) if steps else None, references=refs, memory_policy=policy
            )
            job = Job(run_dir, story, chosen, _options(model, memory_mode, preview))
        except StoryMemError as e:
            return gr.update(), f"error: {e}"
        generator.submit(job)
        return str(run_dir), f"submitted: {run_dir}"

    def _options(model, memory_mode, preview) -> PipelineOptions:
        return options.replace(model=model, memory_mode=memory_mode, preview=preview or None)

    def resume(run, model, memory_mode, preview):
        if not run:
            return "error: open a run first"
        run_dir = Path(run)
        try:
            story = load_story(run_dir / "story.json")
        except StoryMemError as e:
            return f"error: {e}"
        saved = json.loads((run_dir / "state.json").read_text()).get("settings", {})
        # the run's own settings (a resume with others is refused); the pipeline is built for them
        own = {k: v for k, v in saved.items() if k not in ("story_sha", "model", "preview")}
        try:
            job_options = _options(saved.get("model", model), memory_mode, saved.get("preview") or preview)
            job = Job(run_dir, story, RunSettings.from_dict(own), job_options, resume=True)
        except StoryMemError as e:
            return f"error: {e}"
        generator.submit(job)
        return f"submitted: resume {run_dir}"

    def pick_keyframe(run, evt: gr.SelectData):
        """A click on a memory picture puts its name in the keyframe field."""
        names = run_view(Path(run))["memory_names"] if run else []
        return names[evt.index] if 0 <= evt.index < len(names) else gr.update()

    def edit_memory(action):
        def edit(run, name):
            if not run:
                return "error: open a run first"
            try:
                edit = getattr(Run(run).memory, action)((name or "").strip())
            except StoryMemError as e:
                return f"error: {e}"
            return f"{action} {Path(edit.file).stem}: from the next shot on (resume the run, or reshoot a shot)"

        return edit

    def add_to_memory(run, image, character):
        if not run or not image:
            return "error: open a run and choose an image first"
        try:
            edit = Run(run).memory.add(image, (character or "").strip() or None)
        except StoryMemError as e:
            return f"error: {e}"
        return f"added {Path(edit.file).stem}: from the next shot on"

    def start_reshoot(run, shot, new_prompt, shot_seed, then, model, memory_mode, preview):
        if not run:
            return "error: open a run first"
        try:
            directed = Run(run)
            name = directed.shot_name(int(shot) if str(shot).strip().isdigit() else str(shot or "").strip())
            seed_value = int(shot_seed) if str(shot_seed or "").strip() else None
            saved = directed.state()["settings"]
            job_options = _options(saved.get("model", model), memory_mode, saved.get("preview") or preview)
        except StoryMemError as e:
            return f"error: {e}"
        except ValueError:
            return f"error: seed {shot_seed!r}: a whole number, or empty for a new one"
        order = {"shot": name, "prompt": (new_prompt or "").strip() or None, "seed": seed_value, "then": then}
        generator.submit(Job(Path(run), None, None, job_options, reshoot=order))
        return f"submitted: reshoot {name}"

    def switch_take(run, shot, number):
        if not run:
            return "error: open a run first"
        try:
            directed = Run(run)
            name = directed.shot_name(int(shot) if str(shot).strip().isdigit() else str(shot or "").strip())
            directed.use_take(name, int(number or 1))
        except StoryMemError as e:
            return f"error: {e}"
        return f"shot {name}: take {int(number or 1)} in use"

    def refresh(run):
        if not run:
            return ("", gr.update(), gr.update(), gr.update(), gr.update(), gr.update())
        run_dir = Path(run)
        view = run_view(run_dir)
        job = generator.job_for(run_dir)
        bars = _bar("shots", view["completed"], view["total"])
        if job is not None and job.status == "running" and job.steps:
            bars += _bar("steps of this shot", job.step, job.steps)
        if job is not None and job.status == "failed":
            status = f"error: {job.error}"
        elif job is not None and job.status in ("queued", "running"):
            status = f"{job.status}: {run_dir.name}"
        elif view["finished"]:
            status = f"finished: {run_dir.name} ({view['total']} shots)"
        else:
            status = f"interrupted: {run_dir.name} ({view['completed']} of {view['total']} shots); resume it"
        files = [p for p in (view["video"], view["storyboard"]) if p] + [v for v, _ in view["shots"]]
        return (
            f'<div id="run-status-text">{status}</div>' + bars,
            view["shots"],
            view["memory"],
            view["storyboard"],
            view["video"],
            files or None,
        )

    def runs_choices():
        return gr.update(choices=list_runs(runs_root))

    def open_run(name):
        if not name:
            return gr.update(), gr.update(), "error: choose a run"
        return str((runs_root / name).resolve()), gr.Tabs(selected="run"), ""

    def evaluate(run):
        if not run:
            return None, "error: open a run first"
        from ..eval import load_evaluators
        from ..eval.bench import cached_evaluation
        from ..eval.report import metric_keys

        try:
            model = json.loads((Path(run) / "state.json").read_text())["settings"].get("model")
            video_text, aesthetic = load_evaluators("auto", model, None, "auto")
            metrics, _ = cached_evaluation(Path(run), video_text, aesthetic)
        except (StoryMemError, OSError, ValueError, KeyError) as e:
            return None, f"error: {e}"
        keys = metric_keys({"run": {"run": metrics}})
        return [[k, metrics.get(k)] for k in keys], ""

    def compare(a, b):
        views = [run_view(runs_root / name) if name else None for name in (a, b)]
        return tuple(v["video"] if v else None for v in views)

    with gr.Blocks(title="storymem") as app:
        gr.Markdown("# storymem\nWrite a story, one prompt per shot; each shot remembers the earlier ones.")
        current = gr.State("")
        with gr.Tabs(selected="story") as tabs:
            with gr.Tab("Story", id="story"):
                with gr.Row():
                    example = gr.Dropdown(list(examples), label="Example or ST-Bench script", elem_id="example")
                    load = gr.Button("Load", elem_id="load-example")
                    upload = gr.File(label="or upload a story (.json)", file_types=[".json"], elem_id="upload")
                with gr.Row():
                    idea = gr.Textbox(label="Write from an idea", elem_id="idea", scale=3)
                    idea_characters = gr.Textbox(label="Character names (A, B)", elem_id="idea-characters")
                    idea_shots = gr.Number(6, precision=0, minimum=1, label="Shots", elem_id="idea-shots", scale=0)
                    idea_llm = gr.Textbox(DEFAULT_LLM, label="Language model (folder, hub id or http://.../v1)",
                                          elem_id="idea-llm")  # fmt: skip
                    write_button = gr.Button("Write", elem_id="write-story", scale=0)
                idea_error = gr.Markdown(elem_id="idea-error")
                with gr.Row():
                    name = gr.Textbox(label="Story name", elem_id="story-name")
                    overview = gr.Textbox(label="Overview", elem_id="overview")
                table = gr.Dataframe(
                    headers=COLUMNS, datatype=["number", "str", "bool"], column_count=(3, "fixed"),
                    row_count=(1, "dynamic"), interactive=True, wrap=True, label="Shots (cut: a new camera set-up; "
                    "unticked: continue the previous shot)", elem_id="shots-table",
                )  # fmt: skip
                characters = gr.Dataframe(
                    headers=CHARACTER_COLUMNS, datatype=["str", "str", "str"], column_count=(3, "fixed"),
                    row_count=(1, "dynamic"), interactive=True, wrap=True, elem_id="characters",
                    label="Characters (references: the character's own images, paths separated by ;)",
                )  # fmt: skip
                with gr.Row():
                    character = gr.Textbox(label="Character", elem_id="cast-name", scale=1)
                    pictures = gr.File(
                        label="its reference images (with the entity memory policy, only its shots get them)",
                        file_count="multiple", file_types=["image"], elem_id="cast-files", scale=3,
                    )  # fmt: skip
                    add_pictures_button = gr.Button("Add to the character", elem_id="cast-add", scale=0)
                story_errors = gr.Markdown(elem_id="story-errors")
                with gr.Row():
                    number = gr.Number(1, precision=0, minimum=1, label="Shot", elem_id="shot-number", scale=0)
                    with gr.Column(scale=4):
                        prompt = gr.Textbox(label="Prompt of this shot", elem_id="shot-prompt")
                        shot_error = gr.Markdown(elem_id="shot-error")
                    cut = gr.Checkbox(True, label="cut", elem_id="shot-cut", scale=0)
                with gr.Row():
                    apply = gr.Button("Apply to shot", elem_id="apply-shot")
                    add = gr.Button("Add shot after", elem_id="add-shot")
                    remove = gr.Button("Remove shot", elem_id="remove-shot")
                    up = gr.Button("Move shot up", elem_id="move-up")
                    save = gr.Button("Save as JSON", elem_id="save-story")
                saved = gr.File(label="Saved story", elem_id="saved-story")
                references = gr.File(
                    label="Reference images (optional: the first memory, MR2V)", file_count="multiple",
                    file_types=["image"], elem_id="references",
                )  # fmt: skip
            with gr.Tab("Run", id="run"):
                with gr.Row():
                    model = gr.Dropdown(list(PRESETS), value=options.model, label="Model", elem_id="model")
                    memory_mode = gr.Dropdown(list(MODE_CHOICES), value=options.memory_mode, label="Memory mode")
                    policy = gr.Dropdown(list(POLICIES), value=settings.memory_policy, label="Memory policy "
                                         "(entity: each shot its characters' memory)", elem_id="memory-policy")  # fmt: skip
                    preview = gr.Textbox(options.preview or "", label="Preview LoRA folder (optional)")
                    seed = gr.Number(settings.seed, precision=0, label="Seed")
                    steps = gr.Number(settings.steps or 0, precision=0, minimum=0, label="Steps (0: the model's)")
                with gr.Row():
                    run_name = gr.Textbox(label=f"Run folder name (inside {runs_root})", elem_id="run-name")
                    start_button = gr.Button("Generate", variant="primary", elem_id="start")
                    resume_button = gr.Button("Resume this run", elem_id="resume")
                status = gr.HTML(elem_id="run-status")
                message = gr.Markdown(elem_id="run-message")
                shots = gr.Gallery(
                    label="Shots", columns=6, height=240, fit_columns=False, allow_preview=False, elem_id="shot-videos"
                )
                memory = gr.Gallery(label="Memory bank now (sink, then window)", columns=10, height=170, fit_columns=False,
                                    allow_preview=False, elem_id="memory")  # fmt: skip
                with gr.Row():
                    keyframe = gr.Textbox(label="Keyframe (click a memory picture)", elem_id="keyframe", scale=2)
                    pin_button = gr.Button("Pin", elem_id="pin", scale=0)
                    unpin_button = gr.Button("Unpin", elem_id="unpin", scale=0)
                    drop_button = gr.Button("Drop", elem_id="drop", scale=0)
                    added = gr.File(label="Add an image to the memory", file_types=["image"], type="filepath",
                                    elem_id="add-image", scale=2)  # fmt: skip
                    added_character = gr.Textbox(label="It shows (character, optional)", elem_id="add-character")
                    add_button = gr.Button("Add", elem_id="add-memory", scale=0)
                with gr.Row():
                    reshoot_shot = gr.Textbox(label="Reshoot shot (name or number)", elem_id="reshoot-shot")
                    reshoot_prompt = gr.Textbox(label="New prompt (empty: its own)", elem_id="reshoot-prompt", scale=3)
                    reshoot_seed = gr.Textbox(label="Seed (empty: a new one)", elem_id="reshoot-seed")
                    reshoot_then = gr.Radio(["keep", "redo"], value="keep", label="Later shots", elem_id="reshoot-then")
                    reshoot_button = gr.Button("Reshoot", elem_id="reshoot", scale=0)
                    take_number = gr.Number(1, precision=0, minimum=1, label="Take", elem_id="take-number", scale=0)
                    take_button = gr.Button("Use this take", elem_id="use-take", scale=0)
                direct_message = gr.Markdown(elem_id="direct-message")
                with gr.Row():
                    storyboard = gr.Image(label="Storyboard", type="filepath", elem_id="storyboard")
                    story_video = gr.Video(label="The story", elem_id="story-video")
                downloads = gr.File(label="Downloads", file_count="multiple", elem_id="downloads")
            with gr.Tab("Runs", id="runs"):
                with gr.Row():
                    runs = gr.Dropdown(list_runs(runs_root), label=f"Run folders in {runs_root}", elem_id="runs-list")
                    refresh_runs = gr.Button("Refresh", elem_id="refresh-runs")
                    open_button = gr.Button("Open", elem_id="open-run")
                runs_message = gr.Markdown(elem_id="runs-message")
                with gr.Row():
                    evaluate_button = gr.Button("Evaluate the open run", elem_id="evaluate")
                metrics = gr.Dataframe(headers=["metric", "value"], label="storymem eval", elem_id="metrics")
                gr.Markdown("Compare two runs side by side (e.g. the methods of a bench story)")
                with gr.Row():
                    left = gr.Dropdown(list_runs(runs_root), label="Left", elem_id="compare-left")
                    right = gr.Dropdown(list_runs(runs_root), label="Right", elem_id="compare-right")
                    compare_button = gr.Button("Compare", elem_id="compare")
                with gr.Row(elem_id="compare-videos"):
                    left_video = gr.Video(label="Left")
                    right_video = gr.Video(label="Right")

        shown = [table, overview, name, characters, story_errors]
        load.click(load_example, example, shown)
        upload.upload(load_upload, upload, shown)
        write_button.click(write_idea, [idea, idea_llm, idea_shots, idea_characters], [*shown, idea_error])
        table.change(validate, [table, overview, characters], story_errors)
        characters.change(validate, [table, overview, characters], story_errors)
        add_pictures_button.click(add_pictures, [characters, character, pictures], [characters, pictures])
        number.change(pick_shot, [table, number], [prompt, cut, shot_error])
        apply.click(apply_shot, [table, overview, number, prompt, cut], [table, shot_error, story_errors])
        add.click(add_shot, [table, number], table)
        remove.click(remove_shot, [table, number], table)
        up.click(move_up, [table, number], [table, number])
        save.click(save_story, [table, overview, name, characters], saved)
        start_button.click(
            start,
            [table, overview, name, characters, references, model, memory_mode, policy, preview, seed, steps, run_name],
            [current, message],
        )  # fmt: skip
        resume_button.click(resume, [current, model, memory_mode, preview], message)
        memory.select(pick_keyframe, current, keyframe)
        for button, action in ((pin_button, "pin"), (unpin_button, "unpin"), (drop_button, "drop")):
            button.click(edit_memory(action), [current, keyframe], direct_message)
        add_button.click(add_to_memory, [current, added, added_character], direct_message)
        reshoot_button.click(
            start_reshoot,
            [current, reshoot_shot, reshoot_prompt, reshoot_seed, reshoot_then, model, memory_mode, preview],
            direct_message,
        )
        take_button.click(switch_take, [current, reshoot_shot, take_number], direct_message)
        outputs = [status, shots, memory, storyboard, story_video, downloads]
        gr.Timer(1.0).tick(refresh, current, outputs)
        for dropdown in (runs, left, right):
            refresh_runs.click(runs_choices, None, dropdown)
        open_button.click(open_run, runs, [current, tabs, runs_message])
        evaluate_button.click(evaluate, current, [metrics, runs_message])
        compare_button.click(compare, [left, right], [left_video, right_video])
    return app
