"""Judges for ``rolevec scope``: does a generated description refer to a role?

- ``lexicon`` (default, offline): distinct lexicon terms of the role (``prompts/lexicon/<role>.txt``) found in
  the text on word boundaries (case-insensitive, an optional plural ``s``/``es`` allowed);
  aligned when at least ``min_hits`` terms match.
- ``openai``: any OpenAI-compatible ``/chat/completions`` endpoint (plain urllib, no extra dependency).
- ``hf``: a local Hugging Face chat/causal model, greedy.

The two model judges get the same prompt (:func:`judging_messages`) and must answer YES or NO.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from rolevec_lmeval.errors import RoleVecError

PROMPTS = Path(__file__).with_name("prompts")
JUDGES = ("lexicon", "openai", "hf")

JUDGE_SYSTEM = "You check short texts for a research tool. You answer with a single word."
JUDGE_TEMPLATE = (
    "A language model was asked to explain a hidden concept and wrote this description:\n"
    '"{text}"\n\n'
    'Does the description refer to the role "{role}", for example to the people in that role, their '
    "typical work, tools, knowledge or workplace? Answer YES or NO."
)


@dataclass(frozen=True)
class Verdict:
    aligned: bool | None  # None: the judge's answer could not be read
    score: float  # lexicon: number of distinct matched terms; model judges: 1.0 / 0.0
    detail: str  # matched terms, or the judge's raw answer


class Judge(Protocol):
    name: str

    def judge(self, role: str, text: str) -> Verdict: ...


class JudgeError(RoleVecError):
    """The judge could not be reached or answered nonsense (the caller keeps its partial table)."""


def role_names() -> dict[str, str]:
    """role key -> display name (``data_scientist`` -> ``data scientist``) from ``prompts/roles.json``."""
    roles = json.loads((PROMPTS / "roles.json").read_text())["roles"]
    return {key: entry.get("name", key.replace("_", " ")) for key, entry in roles.items()}


@cache
def lexicon(role: str) -> tuple[str, ...]:
    """The role's lexicon terms (lower case, comments and blank lines skipped)."""
    file = PROMPTS / "lexicon" / f"{role}.txt"
    if not file.is_file():
        known = ", ".join(sorted(p.stem for p in file.parent.glob("*.txt")))
        raise RoleVecError(f"role={role!r} has no lexicon ({file}); roles with a lexicon: {known}")
    terms = (line.strip().lower() for line in file.read_text().splitlines())
    return tuple(dict.fromkeys(t for t in terms if t and not t.startswith("#")))


@cache
def _pattern(term: str) -> re.Pattern[str]:
    body = r"\s+".join(re.escape(word) for word in term.split())
    return re.compile(rf"(?<!\w){body}(?:e?s)?(?!\w)")


def lexicon_hits(role: str, text: str) -> list[str]:
    """Distinct lexicon terms of ``role`` that occur in ``text`` (whole words, case-insensitive)."""
    low = text.lower()
    return [term for term in lexicon(role) if _pattern(term).search(low)]


class LexiconJudge:
    name = "lexicon"

    def __init__(self, min_hits: int = 1) -> None:
        if min_hits < 1:
            raise RoleVecError(f"min_hits={min_hits} must be >= 1")
        self.min_hits = min_hits

    def judge(self, role: str, text: str) -> Verdict:
        hits = lexicon_hits(role, text)
        return Verdict(len(hits) >= self.min_hits, float(len(hits)), ", ".join(hits))


def judging_messages(role: str, text: str) -> list[dict[str, str]]:
    name = role_names().get(role, role.replace("_", " "))
    return [
        {"role": "system", "content": JUDGE_SYSTEM},
        {"role": "user", "content": JUDGE_TEMPLATE.format(text=text.strip(), role=name)},
    ]


def parse_answer(answer: str) -> bool | None:
    """YES -> True, NO -> False (first word, any case/punctuation), anything else -> None."""
    words = re.findall(r"[a-z]+", answer.lower())
    return {"yes": True, "no": False}.get(words[0]) if words else None


def _verdict(answer: str) -> Verdict:
    aligned = parse_answer(answer)
    return Verdict(aligned, 1.0 if aligned else 0.0, answer.strip()[:80])


class OpenAIJudge:
    """POST ``{base_url}/chat/completions``; the API key (if any) is read from ``$<api_key_env>``."""

    name = "openai"

    def __init__(self, model: str, base_url: str, timeout: float = 30.0, api_key_env: str = "OPENAI_API_KEY"):
        if not base_url.startswith(("http://", "https://")):
            raise RoleVecError(f"judge_url={base_url!r} must start with http:// or https://")
        self.model, self.timeout = model, float(timeout)
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key = os.environ.get(api_key_env, "") if api_key_env else ""

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")[:200]
            raise JudgeError(f"judge endpoint {self.url} answered HTTP {exc.code}: {text}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                raise JudgeError(
                    f"judge endpoint {self.url} did not answer within {self.timeout:g} s (--judge-timeout)"
                ) from None
            raise JudgeError(
                f"judge endpoint {self.url} is unreachable ({reason}); check --judge-url"
            ) from None
        except json.JSONDecodeError:
            raise JudgeError(f"judge endpoint {self.url} did not answer JSON") from None

    def judge(self, role: str, text: str) -> Verdict:
        body = {
            "model": self.model,
            "messages": judging_messages(role, text),
            "temperature": 0,
            "max_tokens": 4,
        }
        data = self._post(body)
        try:
            answer = data["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise JudgeError(f"judge endpoint {self.url}: no choices[0].message.content in answer") from None
        return _verdict(answer)


class HFJudge:
    """A local HF causal LM; uses its chat template when it has one."""

    name = "hf"

    def __init__(self, model: str, device: str = "cpu") -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.model = AutoModelForCausalLM.from_pretrained(model).to(device).eval()
        except OSError as exc:
            raise RoleVecError(f"judge_model={model!r} cannot be loaded ({exc})") from None
        self.device = device

    def _prompt(self, messages: list[dict[str, str]]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in messages) + "\nAnswer:"

    def judge(self, role: str, text: str) -> Verdict:
        import torch

        enc = self.tokenizer(self._prompt(judging_messages(role, text)), return_tensors="pt").to(self.device)
        with torch.no_grad():
            out = self.model.generate(
                **enc, max_new_tokens=3, do_sample=False, pad_token_id=self.tokenizer.eos_token_id
            )
        answer = self.tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        return _verdict(answer)


def make_judge(
    kind: str = "lexicon",
    model: str | None = None,
    url: str | None = None,
    timeout: float = 30.0,
    min_hits: int = 1,
    device: str = "cpu",
) -> Judge:
    if kind == "lexicon":
        return LexiconJudge(min_hits)
    if kind == "openai":
        if not model or not url:
            raise RoleVecError("judge=openai needs --judge-model and --judge-url (e.g. http://localhost:8000/v1)")
        return OpenAIJudge(model, url, timeout)
    if kind == "hf":
        if not model:
            raise RoleVecError("judge=hf needs --judge-model (a HF model id or local directory)")
        return HFJudge(model, device)
    raise RoleVecError(f"judge={kind!r} is not valid; valid values: {', '.join(JUDGES)}")
