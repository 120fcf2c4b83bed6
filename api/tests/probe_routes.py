"""A route that records test tasks through the outbox, as a real write endpoint does."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from backend_app.core.read_replica import WriteSession
from backend_app.outbox import service as outbox
from backend_app.tasks.models import TaskBackend

probe = APIRouter(prefix="/probe")

TASK_NAMES = {TaskBackend.celery: "tests.record_effect", TaskBackend.rq: "tests.worker_tasks.record_effect_job"}
# Tasks that read their own task record back from a replica (read-your-writes in workers).
READ_BACK_TASK_NAMES = {
    TaskBackend.celery: "tests.read_own_record",
    TaskBackend.rq: "tests.worker_tasks.read_own_record_job",
}
QUEUES = {TaskBackend.celery: "emails", TaskBackend.rq: "notifications"}


class TaskRequest(BaseModel):
    backend: TaskBackend
    key: str
    owner_id: int | None = None
    sleep_after_effect: float = 0
    fail_times: int = 0
    fail: str = ""
    roll_back: bool = False
    read_back: bool = False
    queue: str | None = None  # another queue of the backend (video_processing has work horses)


@probe.post("/tasks", status_code=201)
async def record_task(request: TaskRequest, session: WriteSession) -> dict[str, str]:
    task_id = await outbox.add_named(
        session=session,
        backend=request.backend,
        queue=request.queue or QUEUES[request.backend],
        task=(READ_BACK_TASK_NAMES if request.read_back else TASK_NAMES)[request.backend],
        kwargs={
            "key": request.key,
            "sleep_after_effect": request.sleep_after_effect,
            "fail_times": request.fail_times,
            "fail": request.fail,
        },
        owner_id=request.owner_id,
    )
    if request.roll_back:
        raise HTTPException(status_code=422, detail="rolled back on purpose")
    return {"task_id": task_id}
