"""`storymem write`: a story script from an idea, written by a language model whose output is
held to the story's shape (a JSON schema), so it is always a valid story.

    from storymem.write import write_story
    story = write_story("a fox and a crow share a winter", shots=6, scenes=2, characters=["Fox", "Crow"])

The model: `tiny` (random weights built in code, for tests: noise that is still a valid story), a
local folder or hub id run with transformers (default Qwen/Qwen2.5-0.5B-Instruct), or the address
of an OpenAI-compatible server (http://... ending in /v1).
"""

from __future__ import annotations

from ..errors import InputError
from ..story import parse_story
from .schema import LIMITS, TINY_LIMITS, check_draft, draft_schema, draft_to_story, shots_per_scene

__all__ = ["DEFAULT_LLM", "story_messages", "write_story"]

DEFAULT_LLM = "Qwen/Qwen2.5-0.5B-Instruct"  # Apache-2.0, 0.5B parameters: runs on a laptop CPU

STYLE = """You write story scripts for a video model that makes one short shot (about 5 seconds) per prompt.
Write the story as scenes, each a list of shots. Each shot's prompt describes what the camera sees,
in one or two sentences, in the present tense: who, doing what, where, the light and the camera.
The first shot in which a character appears describes its look in full (kind, colours, clothes,
shape); later shots name the character only, so its look must be remembered. A shot's "cut" is
true for a new camera set-up and false when it continues the shot before it without a cut.
Give each character a one-line look. Answer with JSON only."""


def story_messages(idea: str, shots: int, scenes: int, names: list[str], characters: int) -> list[dict]:
    counts = ", ".join(str(n) for n in shots_per_scene(shots, scenes))
    cast = f"The characters are {', '.join(names)}." if names else f"Invent {characters} character(s)."
    ask = f"Idea: {idea}\n{scenes} scene(s) with {counts} shot(s). {cast}"
    return [{"role": "system", "content": STYLE}, {"role": "user", "content": ask}]


def write_story(
    idea: str,
    shots: int = 6,
    scenes: int = 2,
    characters: list[str] | None = None,
    llm: str = DEFAULT_LLM,
    seed: int = 0,
    llm_model: str | None = None,
    device: str = "cpu",
    count: int = 1,
    timeout: float = 300,
) -> dict:
    """A story script (a dict in our format, valid) for `idea`. characters: the names to use; none
    given, `count` characters are invented. timeout: seconds a server may take to answer."""
    names = [n.strip() for n in characters or [] if n.strip()]
    if not idea.strip():
        raise InputError("IDEA must not be empty: say what the story is about")
    if len({n.casefold() for n in names}) != len(names):
        raise InputError(f"--characters: a name is given twice ({', '.join(names)})")
    invented = 0 if names else count
    tiny = llm == "tiny"
    schema = draft_schema(shots, scenes, names, invented, TINY_LIMITS if tiny else LIMITS)
    messages = story_messages(idea.strip(), shots, scenes, names, invented)
    if llm.startswith(("http://", "https://")):
        from .http import http_draft

        draft = http_draft(llm, messages, schema, seed, llm_model, timeout)
        problem = check_draft(draft, shots, scenes, names, invented)
        if problem:
            raise InputError(f"--llm {llm}: the model's answer is not a story of the asked shape ({problem})")
    else:
        from .local import generate_draft, load_llm

        model, tokenizer = load_llm(llm, device)
        draft = generate_draft(model, tokenizer, messages, schema, seed)
    story = draft_to_story(draft)
    parse_story(story, file="the written story")  # valid by construction; checked all the same
    return story
