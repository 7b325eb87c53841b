from .client import GepaClient, JobState, SSEEnvelope

__all__ = ["GepaClient", "SSEEnvelope", "JobState"]
