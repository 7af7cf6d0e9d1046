"""`storymem write`: a story script from an idea. The tiny random model's prose is noise, but the
schema-constrained decoding makes every draft a valid story; the HTTP path is tested against a
small OpenAI-compatible server started here."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from storymem import InputError, parse_story
from storymem.write import write_story
from storymem.write.schema import LIMITS, check_draft, draft_schema, draft_to_story, shots_per_scene


def test_shots_are_spread_over_the_scenes():
    assert shots_per_scene(7, 3) == [3, 2, 2] and shots_per_scene(2, 2) == [1, 1]
    with pytest.raises(InputError, match="--shots must be at least --scenes"):
        shots_per_scene(1, 2)


def test_the_tiny_model_writes_a_valid_story_for_20_of_20_seeds():
    for seed in range(20):
        story = write_story("a fox and a crow", shots=2, scenes=1, characters=["Tam", "Ole"], llm="tiny", seed=seed)
        parsed = parse_story(story)
        assert [len(s.video_prompts) for s in parsed.scenes] == [2]
        assert parsed.character_names == ["Tam", "Ole"] and parsed.scenes[0].cut[0] is True
    invented = parse_story(write_story("a day at sea", shots=3, scenes=2, llm="tiny", seed=1, count=2))
    assert len(invented.characters) == 2 and [len(s.video_prompts) for s in invented.scenes] == [2, 1]


DRAFT = {
    "story_name": "Winter",
    "story_overview": "A fox and a crow share a winter.",
    "characters": [{"name": "Tam", "look": "a red fox with a white tail"}, {"name": "Ole", "look": "a black crow"}],
    "scenes": [
        {
            "shots": [
                {"prompt": "Tam, a red fox with a white tail, trots through snow.", "cut": False},
                {"prompt": "Tam stops and looks up.", "cut": False},
            ]
        },
        {"shots": [{"prompt": "Ole, a black crow, lands beside Tam.", "cut": True}]},
    ],  # fmt: skip
}


def test_a_draft_becomes_our_story_format():
    story = draft_to_story(DRAFT)
    prompts = [shot["prompt"] for shot in DRAFT["scenes"][0]["shots"]]
    assert story["scenes"][0] == {"scene_num": 1, "video_prompts": prompts, "cut": [True, False]}  # a first cut
    assert story["characters"][1] == {"name": "Ole", "look": "a black crow"}
    assert parse_story(story).summary().startswith("Winter: 2 scenes, 3 shots")
    assert check_draft(DRAFT, 3, 2, ["Tam", "Ole"], 0) is None
    assert check_draft({**DRAFT, "scenes": DRAFT["scenes"][:1]}, 3, 2, ["Tam", "Ole"], 0) == "scenes: expected 2"
    assert "expected 'Tam'" in check_draft({**DRAFT, "characters": DRAFT["characters"][::-1]}, 3, 2, ["Tam", "Ole"], 0)
    schema = draft_schema(3, 2, ["Tam", "Ole"], 0, LIMITS)
    assert [c["properties"]["name"] for c in schema["properties"]["characters"]["prefixItems"]] == [
        {"const": "Tam"},
        {"const": "Ole"},
    ]


class Server:
    """An OpenAI-compatible server in a thread; `mode` says how it answers."""

    def __init__(self):
        self.mode, self.requests = "good", []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, code, body: bytes):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self.reply(200, json.dumps({"data": [{"id": "story-model"}]}).encode())

            def do_POST(self):
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((request, self.headers.get("Authorization")))
                content = {
                    "good": json.dumps(DRAFT),
                    "shape": json.dumps({**DRAFT, "scenes": []}),
                    "prose": "Once upon",
                }
                if outer.mode == "500":
                    self.reply(500, b"internal error")
                elif outer.mode == "slow":
                    time.sleep(3)
                    self.reply(200, b"{}")
                elif outer.mode == "garbage":
                    self.reply(200, b"<html>")
                else:
                    answer = {"choices": [{"message": {"content": content[outer.mode]}}]}
                    self.reply(200, json.dumps(answer).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()


def test_a_server_writes_the_story_with_the_schema_as_its_response_format(server, monkeypatch):
    monkeypatch.setenv("STORYMEM_LLM_API_KEY", "secret")
    story = write_story("a winter", shots=3, scenes=2, characters=["Tam", "Ole"], llm=server.url, seed=7)
    assert parse_story(story).character_names == ["Tam", "Ole"]
    request, auth = server.requests[0]
    assert auth == "Bearer secret" and request["model"] == "story-model" and request["seed"] == 7
    schema = request["response_format"]["json_schema"]["schema"]
    assert request["response_format"]["type"] == "json_schema" and schema == draft_schema(3, 2, ["Tam", "Ole"], 0)


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("500", "the server answered HTTP 500 (internal error)"),
        ("slow", "no answer within 1 s"),
        ("garbage", "the server's answer is not JSON"),
        ("prose", "the model's answer is not JSON ('Once upon')"),
        ("shape", "the model's answer is not a story of the asked shape (scenes: expected 2)"),
    ],
)
def test_a_failing_server_is_one_line(server, mode, message):
    server.mode = mode
    with pytest.raises(InputError) as info:
        write_story("a winter", shots=3, scenes=2, characters=["Tam", "Ole"], llm=server.url, timeout=1)
    assert str(info.value).startswith(f"--llm {server.url}: ") and message in str(info.value)


def test_the_command_writes_a_valid_story_and_refuses_bad_input(cli, tmp_path, server):
    out = tmp_path / "story.json"
    code, stdout, err = cli("write", "a fox", "--out", out, "--shots", "2", "--scenes", "1", "--llm", "tiny")
    assert code == 0, err
    assert stdout.startswith(f"wrote {out}: 1 scenes, 2 shots, 1 characters")
    assert cli("validate", out)[0] == 0
    before = out.read_bytes()
    cases = [
        (["--llm", "tiny"], f"--out {out}: exists; nothing was written"),
        (["--llm", "http://127.0.0.1:9/v1", "--overwrite"], "cannot reach the server"),
        (["--llm", "tiny", "--characters", "Tam, tam", "--overwrite"], "a name is given twice"),
        (["--llm", "tiny", "--characters", "Tam,,Ole", "--overwrite"], "an empty name"),
        (["--llm", server.url, "--overwrite", "--timeout", "1", "--characters", "Tam,Ole", "--shots", "3"], "HTTP 500"),
    ]
    server.mode = "500"
    for extra, message in cases:
        code, _, err = cli("write", "a fox", "--out", out, *extra)
        assert code == 1 and len(err.strip().splitlines()) == 1 and message in err, (extra, err)
        assert out.read_bytes() == before  # nothing written


def test_the_bitmask_allows_exactly_its_tokens():
    import torch

    from storymem.write.local import allowed_tokens

    mask = torch.tensor([(1 << 0) | (1 << 5), -(1 << 31)], dtype=torch.int32)  # tokens 0, 5 and 63 (sign bit)
    allowed = allowed_tokens(mask, 70)  # wider than the bitmask: logits past the vocabulary
    assert allowed.shape == (70,) and allowed.nonzero().flatten().tolist() == [0, 5, 63]
    assert allowed_tokens(mask, 6).nonzero().flatten().tolist() == [0, 5]
