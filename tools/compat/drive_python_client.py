"""Drives the original service's own Python client (`gepa_client`, unchanged) and its SSE example
(`examples/python_sse_client.py`, unchanged) against our edge: create, idempotent replay, stream,
resume (explicit id and the client's own `resume()`), state, cancel. Exits non-zero on the first
mismatch. Usage: python drive_python_client.py GEPA_DIR BASE_URL
"""

import asyncio
import os
import subprocess
import sys

import httpx
from gepa_client import GepaClient

GEPA_DIR, BASE = sys.argv[1], sys.argv[2].rstrip("/")
TERMINALS = {"finished", "failed", "cancelled"}


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        sys.exit(1)


async def collect(agen, limit=None):
    out = []
    async for env in agen:
        out.append(env)
        if limit is not None and len(out) >= limit:
            break
    return out


async def main():
    async with GepaClient(BASE, bearer_token="any") as client:
        job = await client.create_job(
            "Write a short haiku about the sea",
            iterations=2,
            idempotency_key="compat-1",
            examples=[{"id": 1, "input": "waves on the shore"}],
            objectives=["brevity", "diversity", "coverage"],
            seed=7,
            model_id="openai/gpt-4o-mini",
        )
        again = await client.create_job(
            "Write a short haiku about the sea",
            iterations=2,
            idempotency_key="compat-1",
            examples=[{"id": 1, "input": "waves on the shore"}],
            objectives=["brevity", "diversity", "coverage"],
            seed=7,
            model_id="openai/gpt-4o-mini",
        )
        check(again == job, f"create_job returns a job id; idempotent replay returns it again ({job})")
        # Ours (issue 18): the same key with a different body is a 409, where the original
        # silently returned the first job for whatever the second body asked.
        try:
            await client.create_job("Write a short haiku about the sea", idempotency_key="compat-1")
            check(False, "the same key with a different body is refused")
        except httpx.HTTPStatusError as err:
            check(err.response.status_code == 409, f"the same key with a different body is 409 ({err.response.status_code})")

        events = await collect(client.stream(job))
        types = [e.type for e in events]
        ids = [e.id for e in events]
        print("     stream:", " ".join(f"{i}:{t}" for i, t in zip(ids, types)))
        check(types[0] == "started" and types[-1] == "finished", "stream starts with started, ends with finished")
        check(ids == list(range(1, len(ids) + 1)), "ids are 1..n with no gap")
        check(all(e.schema_version == 1 and e.job_id == job for e in events), "envelopes carry schema_version 1 and the job id")
        check("proposal" in events[-1].data, "finished carries the result")

        state = await client.state(job)
        check(state.status == "finished" and state.result and "proposal" in state.result, f"state() is finished with a result ({state.status})")

    async with GepaClient(BASE) as fresh:
        resumed = await collect(fresh.stream(job, last_event_id=3))
        check([e.id for e in resumed] == ids[3:], "stream(job, last_event_id=3) replays 4..n, no duplicate")

    async with GepaClient(BASE) as client:
        partial = await collect(client.stream(job), limit=2)
        rest = await collect(client.resume(job))
        check([e.id for e in partial + rest] == ids, "resume() continues after the last id it saw")

        long_job = await client.create_job("Describe a lighthouse at night in one line", iterations=4)
        first = await collect(client.stream(long_job), limit=1)
        check(first[0].type == "started", "a running job streams started")
        await client.cancel(long_job)
        state = await client.state(long_job)
        check(state.status == "cancelled", "cancel() succeeds and the state is cancelled")
        tail = await collect(client.resume(long_job))
        check(tail and tail[-1].type == "cancelled", f"resume() after cancel ends with cancelled ({[e.type for e in tail]})")
        try:
            await client.cancel(long_job)
            check(False, "a second cancel is refused")
        except Exception as err:  # httpx.HTTPStatusError
            check("409" in str(err), "a second cancel is refused with 409")

    example = os.path.join(GEPA_DIR, "examples", "python_sse_client.py")
    env = dict(os.environ, BASE_URL=BASE, API_BEARER_TOKEN="any")
    for args, first_id in (([job], 1), ([job, "4"], 5)):
        try:
            proc = subprocess.run([sys.executable, example, *args], env=env, capture_output=True, text=True, timeout=4)
            out = proc.stdout
        except subprocess.TimeoutExpired as exc:  # it reconnects forever after the end, by design
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        lines = [l for l in out.splitlines() if l.split(":", 1)[0] in set(types)]
        got = lines[0].split(":", 1)[1] if lines else ""
        check(lines and f'"id":{first_id},' in got and lines[len(ids) - first_id].startswith("finished:"),
              f"examples/python_sse_client.py {' '.join(args[1:]) or '(no resume)'} prints events {first_id}..{len(ids)} ending with finished")


asyncio.run(main())
print("all checks passed")
