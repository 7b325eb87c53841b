"""Runs the reference `gepa` library (its DefaultAdapter) on offline-world jobs, for
`benches/gepa_quality.rs`. Every model call goes through litellm to the bench's fake
OpenAI-compatible server, which counts them; this script only drives gepa.

stdin: {"base_url": "...", "jobs": [{"seed_prompt", "train", "val", "budget", "seed", "selector"}]}
stdout: one JSON line per job: {"best_prompt", "task_calls", "wall_s"}.
Install: python3 -m venv target/gepa-venv && target/gepa-venv/bin/pip install gepa==0.1.4 litellm
"""

import json
import os
import sys
import time
import urllib.request

import gepa
from gepa.adapters.default_adapter.default_adapter import DefaultAdapter, EvaluationResult


def strict(data, response):
    """The same strict metric and feedback as innerloop's `strict_match`."""
    expected = data["answer"]
    if response.strip() == expected.strip():
        return EvaluationResult(score=1.0, feedback=f"Correct: the response is exactly {expected!r}.")
    return EvaluationResult(
        score=0.0,
        feedback=f"Incorrect (must match exactly, case-sensitive).\nExpected answer: {expected.strip()}\nResponse: {response.strip()}",
    )


def count(base):
    with urllib.request.urlopen(base.rstrip("/") + "/__count") as r:
        return json.loads(r.read())["task_calls"]


def main():
    spec = json.load(sys.stdin)
    base = spec["base_url"]
    os.environ["OPENAI_API_BASE"] = base
    os.environ["OPENAI_BASE_URL"] = base
    os.environ.setdefault("OPENAI_API_KEY", "sk-offline")
    for job in spec["jobs"]:
        inst = lambda e: {"input": e["input"], "answer": e["expected"], "additional_context": {}}
        before = count(base)
        started = time.monotonic()
        adapter = DefaultAdapter(model="openai/task-model", evaluator=strict)
        result = gepa.optimize(
            seed_candidate={"system_prompt": job["seed_prompt"]},
            trainset=[inst(e) for e in job["train"]],
            valset=[inst(e) for e in job["val"]],
            adapter=adapter,
            reflection_lm="openai/reflect-model",
            candidate_selection_strategy=job["selector"],
            max_metric_calls=job["budget"],
            seed=job["seed"],
            display_progress_bar=False,
        )
        wall = time.monotonic() - started
        print(
            json.dumps(
                {
                    "best_prompt": result.best_candidate["system_prompt"],
                    "task_calls": count(base) - before,
                    "wall_s": wall,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
