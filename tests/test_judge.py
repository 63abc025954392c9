from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rolevec_lmeval.errors import RoleVecError
from rolevec_lmeval.judge import (
    JudgeError,
    LexiconJudge,
    OpenAIJudge,
    judging_messages,
    lexicon,
    lexicon_hits,
    make_judge,
    parse_answer,
    role_names,
)


class ChatServer:
    """A loopback-only OpenAI-style server: answers ``answers`` in turn, records requests."""

    def __init__(self, answers: list, delay: float = 0.0) -> None:
        self.answers, self.requests = list(answers), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((self.path, dict(self.headers), body))
                time.sleep(delay)
                answer = outer.answers.pop(0) if outer.answers else "YES"
                status, payload = (answer if isinstance(answer, tuple)
                                   else (200, {"choices": [{"message": {"content": answer}}]}))
                data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out first
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def chat(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    servers = []

    def start(answers, delay=0.0):
        servers.append(ChatServer(answers, delay))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_lexicon_matches_whole_words_phrases_punctuation_and_plurals():
    assert "patient" in lexicon("doctor") and "x-ray" in lexicon("doctor")
    assert lexicon_hits("doctor", "She sees PATIENTS and orders an X-ray.") == ["patient", "x-ray"]
    assert lexicon_hits("doctor", "a blood\n test") == ["blood test"]
    assert lexicon_hits("doctor", "impatient xray outpatientclinic") == []
    assert lexicon_hits("data_scientist", "a dataset") == ["dataset"]  # not "data"
    assert "sheriff's office" in lexicon_hits("sheriff", "called the Sheriff's Office")


def test_lexicon_judge_threshold_and_unknown_role():
    text = "a person who examines a patient and writes a prescription"
    v = LexiconJudge().judge("doctor", text)
    assert v.aligned and v.score == 2 and v.detail == "patient, prescription"
    assert not LexiconJudge(min_hits=3).judge("doctor", text).aligned
    assert not LexiconJudge().judge("doctor", "a wooden musical instrument").aligned
    with pytest.raises(RoleVecError, match="role='astronaut' has no lexicon"):
        LexiconJudge().judge("astronaut", "space")
    with pytest.raises(RoleVecError, match="min_hits=0"):
        LexiconJudge(0)


def test_every_role_has_a_lexicon():
    assert all(len(lexicon(role)) >= 20 for role in role_names())


@pytest.mark.parametrize(
    "answer, expected",
    [("YES", True), ("yes.", True), (" **No**, because", False), ("Maybe", None), ("", None)],
)
def test_parse_answer(answer, expected):
    assert parse_answer(answer) is expected


def test_judging_prompt_names_role_and_text():
    system, user = judging_messages("data_scientist", "  works with numbers ")
    assert system["role"] == "system" and user["role"] == "user"
    assert '"data scientist"' in user["content"] and '"works with numbers"' in user["content"]
    assert "YES or NO" in user["content"]


def test_openai_judge_posts_chat_completion(chat, monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", "k123")
    server = chat(["YES", "no"])
    judge = OpenAIJudge("judge-model", server.url + "/", timeout=5, api_key_env="MY_JUDGE_KEY")
    assert judge.judge("chemist", "mixes reagents").aligned is True
    v = judge.judge("chemist", "sings")
    assert v.aligned is False and v.detail == "no"
    path, headers, body = server.requests[0]
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer k123"
    assert body["model"] == "judge-model" and body["temperature"] == 0
    assert body["messages"] == judging_messages("chemist", "mixes reagents")


def test_openai_judge_errors_are_clear(chat):
    with pytest.raises(JudgeError, match=r"127\.0\.0\.1:\d+/v1/chat/completions is unreachable"):
        OpenAIJudge("m", closed_port_url(), timeout=2).judge("chemist", "x")
    server = chat([(500, "boom"), (200, "not json"), (200, {"oops": 1})])
    judge = OpenAIJudge("m", server.url, timeout=5)
    with pytest.raises(JudgeError, match="answered HTTP 500: boom"):
        judge.judge("chemist", "x")
    with pytest.raises(JudgeError, match="did not answer JSON"):
        judge.judge("chemist", "x")
    with pytest.raises(JudgeError, match=r"no choices\[0\]"):
        judge.judge("chemist", "x")
    slow = chat(["YES"], delay=1.0)
    with pytest.raises(JudgeError, match=r"did not answer within 0.2 s \(--judge-timeout\)"):
        OpenAIJudge("m", slow.url, timeout=0.2).judge("chemist", "x")


def test_make_judge_validates_arguments():
    assert make_judge().name == "lexicon"
    with pytest.raises(RoleVecError, match="judge=openai needs --judge-model and --judge-url"):
        make_judge("openai", model="m")
    with pytest.raises(RoleVecError, match="judge_url='localhost:8000' must start with http"):
        make_judge("openai", model="m", url="localhost:8000")
    with pytest.raises(RoleVecError, match="judge=hf needs --judge-model"):
        make_judge("hf")
    with pytest.raises(RoleVecError, match="judge='gpt' is not valid; valid values: lexicon, openai, hf"):
        make_judge("gpt")


def test_hf_judge_runs_a_local_model(tiny_llama_dir):
    judge = make_judge("hf", model=str(tiny_llama_dir))
    v = judge.judge("chemist", "mixes reagents in a lab")
    assert v.aligned in (True, False, None) and isinstance(v.detail, str)
    with pytest.raises(RoleVecError, match="judge_model='/nonexistent/judge' cannot be loaded"):
        make_judge("hf", model="/nonexistent/judge")
