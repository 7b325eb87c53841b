"""A Python client generated from proto/ alone (grpcio-tools) drives the core end to end.

Usage: python_client.py HOST:PORT GENERATED_DIR
Creates a job with Optimize, reads the stream to its terminal event, then resumes a WatchJob from
an event id and checks it yields exactly the events after it. Exits non-zero on any mismatch.
"""
import sys

sys.path.insert(0, sys.argv[2])

import grpc  # noqa: E402
from innerloop.v1 import jobs_pb2, jobs_pb2_grpc, optimizer_pb2, optimizer_pb2_grpc  # noqa: E402


def main() -> int:
    channel = grpc.insecure_channel(sys.argv[1])
    optimizer = optimizer_pb2_grpc.OptimizerServiceStub(channel)
    jobs = jobs_pb2_grpc.JobServiceStub(channel)

    request = optimizer_pb2.OptimizeRequest(prompt="Summarise the text in one sentence", iterations=3, seed=7)
    events = list(optimizer.Optimize(request, timeout=60))
    types = [e.type for e in events]
    ids = [e.id for e in events]
    assert types[0] == "started", types
    assert types[-1] == "finished", types
    assert ids == list(range(1, len(ids) + 1)), ids
    assert events[-1].WhichOneof("payload") == "finished"
    job_id = events[0].job_id

    job = jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), timeout=10)
    assert job.status == jobs_pb2.JOB_STATUS_FINISHED, job.status

    resumed = list(jobs.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id, after_event_id=2), timeout=30))
    assert [e.id for e in resumed] == ids[2:], [e.id for e in resumed]

    try:
        jobs.GetJob(jobs_pb2.GetJobRequest(job_id="no-such-job"), timeout=10)
        raise AssertionError("expected NOT_FOUND")
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.NOT_FOUND, err.code()

    print(f"streamed {len(events)} events, resumed {len(resumed)} after id 2")
    print("python-client: 1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
