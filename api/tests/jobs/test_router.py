"""Job postings and applications: rules, filters, errors, and the employer's email."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from devtools.devstack import LocalStack
from tests import accounts
from tests.conftest import SmtpSink, wait_for_mail

Headers = dict[str, str]


@pytest.fixture
def sign_up(client: httpx.AsyncClient) -> Callable:
    async def create(username: str, role: str, *, verified: bool = True) -> Headers:
        _, headers = await accounts.sign_up(client, username, role, verified=verified)
        return headers

    return create


JOB = {
    "title": "Senior Python Engineer",
    "description": "Build background job pipelines with Celery and PostgreSQL replicas.",
    "location": "Berlin",
    "salary_min": 70000,
    "salary_max": 90000,
}


async def post_job(client: httpx.AsyncClient, headers: Headers, **overrides: object) -> dict:
    response = await client.post("/api/jobs", json={**JOB, **overrides}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def test_only_employers_post_jobs(client: httpx.AsyncClient, sign_up: Callable) -> None:
    employer = await sign_up("acme", "employer")
    seeker = await sign_up("sam", "job_seeker")

    created = await client.post("/api/jobs", json=JOB, headers=employer)
    refused = await client.post("/api/jobs", json=JOB, headers=seeker)
    anonymous = await client.post("/api/jobs", json=JOB)

    assert created.status_code == 201
    assert created.json()["is_open"] is True
    assert refused.status_code == 403
    assert refused.json() == {"detail": "Only employers can post jobs.", "code": "forbidden"}
    assert anonymous.status_code == 401


@pytest.mark.parametrize(
    "bad",
    [{"title": ""}, {"salary_min": 100, "salary_max": 10}, {"salary_min": -1}, {"unknown": "field"}],
)
async def test_bad_job_is_422(client: httpx.AsyncClient, sign_up: Callable, bad: dict) -> None:
    employer = await sign_up("acme", "employer")
    response = await client.post("/api/jobs", json={**JOB, **bad}, headers=employer)
    assert response.status_code == 422


async def test_list_filters_search_and_paginates(
    client: httpx.AsyncClient, sign_up: Callable, stack: LocalStack
) -> None:
    acme = await sign_up("acme", "employer")
    globex = await sign_up("globex", "employer")
    python_job = await post_job(client, acme)
    await post_job(client, acme, title="Gardener", description="Look after the office plants daily.", location="Paris")
    globex_job = await post_job(client, globex, title="Data Analyst", description="Analyse Python notebooks.")
    closed = await post_job(client, globex, title="Old Python role", description="This role is already filled.")
    assert (await client.patch(f"/api/jobs/{closed['id']}", json={"closed": True}, headers=globex)).status_code == 200
    stack.wait_for_replicas()

    everything = (await client.get("/api/jobs")).json()
    by_text = (await client.get("/api/jobs", params={"q": "python"})).json()
    by_location = (await client.get("/api/jobs", params={"location": "ber"})).json()
    by_employer = (await client.get("/api/jobs", params={"employer_id": globex_job["employer_id"]})).json()
    page = (await client.get("/api/jobs", params={"limit": 1, "offset": 1})).json()
    with_closed = (await client.get("/api/jobs", params={"include_closed": True})).json()

    assert everything["total"] == 3
    assert {j["id"] for j in by_text["items"]} == {python_job["id"], globex_job["id"]}
    assert by_text["items"][0]["id"] == python_job["id"], "a title match ranks above a description match"
    assert {j["location"] for j in by_location["items"]} == {"Berlin"}
    assert [j["id"] for j in by_employer["items"]] == [globex_job["id"]]
    assert (page["total"], len(page["items"]), page["offset"]) == (3, 1, 1)
    assert with_closed["total"] == 4
    assert (await client.get("/api/jobs", params={"limit": 0})).status_code == 422


async def test_only_the_owner_changes_or_deletes_a_job(client: httpx.AsyncClient, sign_up: Callable) -> None:
    acme = await sign_up("acme", "employer")
    globex = await sign_up("globex", "employer")
    job = await post_job(client, acme)

    stolen = await client.patch(f"/api/jobs/{job['id']}", json={"title": "Mine now"}, headers=globex)
    renamed = await client.patch(f"/api/jobs/{job['id']}", json={"title": "Staff Python Engineer"}, headers=acme)
    bad_range = await client.patch(f"/api/jobs/{job['id']}", json={"salary_max": 10}, headers=acme)
    not_deleted = await client.delete(f"/api/jobs/{job['id']}", headers=globex)
    deleted = await client.delete(f"/api/jobs/{job['id']}", headers=acme)
    missing = await client.get(f"/api/jobs/{job['id']}")

    assert stolen.status_code == 403
    assert renamed.json()["title"] == "Staff Python Engineer"
    assert bad_range.status_code == 422
    assert not_deleted.status_code == 403
    assert deleted.status_code == 204
    assert missing.status_code == 404
    assert missing.json() == {"detail": "No such job.", "code": "not_found"}


async def test_apply_emails_the_employer_and_refuses_twice(
    client: httpx.AsyncClient, sign_up: Callable, mail_workers: SmtpSink
) -> None:
    acme = await sign_up("acme", "employer")
    seeker = await sign_up("sam", "job_seeker")
    job = await post_job(client, acme)

    applied = await client.post(f"/api/jobs/{job['id']}/apply", json={"cover_letter": "Hire me."}, headers=seeker)
    again = await client.post(f"/api/jobs/{job['id']}/apply", json={}, headers=seeker)
    by_employer = await client.post(f"/api/jobs/{job['id']}/apply", json={}, headers=acme)

    assert applied.status_code == 201
    assert again.status_code == 409
    assert again.json() == {"detail": "You have already applied to this job.", "code": "conflict"}
    assert by_employer.status_code == 403
    mails = await wait_for_mail(mail_workers, "acme@example.com", count=2)  # welcome + application
    [mail] = [m for m in mails if m["Subject"].startswith("New application")]
    assert mail["Subject"] == "New application for Senior Python Engineer from Sam Tester"
    assert f"http://localhost:8000/jobs/{job['id']}/applications" in mail.get_body(("plain",)).get_content()
    assert "sam@example.com" in mail.get_body(("plain",)).get_content()


async def test_closed_job_refuses_applications(client: httpx.AsyncClient, sign_up: Callable) -> None:
    acme = await sign_up("acme", "employer")
    seeker = await sign_up("sam", "job_seeker")
    job = await post_job(client, acme)
    expired = await post_job(client, acme, expires_at="2030-01-01T00:00:00Z")
    # A change may set a time already past: the posting has expired.
    past = await client.patch(f"/api/jobs/{expired['id']}", json={"expires_at": "2020-01-01T00:00:00Z"}, headers=acme)
    assert past.status_code == 200
    assert past.json()["is_open"] is False
    await client.patch(f"/api/jobs/{job['id']}", json={"closed": True}, headers=acme)

    closed_answer = await client.post(f"/api/jobs/{job['id']}/apply", json={}, headers=seeker)
    expired_answer = await client.post(f"/api/jobs/{expired['id']}/apply", json={}, headers=seeker)
    unknown = await client.post("/api/jobs/999999/apply", json={}, headers=seeker)

    assert closed_answer.status_code == expired_answer.status_code == 409
    assert closed_answer.json() == {"detail": "This job is closed to new applications.", "code": "conflict"}
    assert unknown.status_code == 404


async def test_applications_are_visible_to_the_job_owner_and_the_applicant(
    client: httpx.AsyncClient, sign_up: Callable, stack: LocalStack
) -> None:
    acme = await sign_up("acme", "employer")
    globex = await sign_up("globex", "employer")
    seeker = await sign_up("sam", "job_seeker")
    job = await post_job(client, acme)
    await client.post(f"/api/jobs/{job['id']}/apply", json={"cover_letter": "Hello"}, headers=seeker)
    stack.wait_for_replicas()

    for_owner = await client.get(f"/api/jobs/{job['id']}/applications", headers=acme)
    for_other = await client.get(f"/api/jobs/{job['id']}/applications", headers=globex)
    mine = await client.get("/api/users/me/applications", headers=seeker)

    assert for_owner.status_code == 200
    assert [a["cover_letter"] for a in for_owner.json()["items"]] == ["Hello"]
    assert for_other.status_code == 403
    assert mine.json()["total"] == 1
    assert mine.json()["items"][0]["job_id"] == job["id"]


async def test_a_time_without_a_zone_is_taken_as_utc_on_create_and_update(
    client: httpx.AsyncClient, sign_up: Callable
) -> None:
    employer = await sign_up("naive-employer", "employer")

    job = await post_job(client, employer, expires_at="2030-01-01T00:00:00")
    updated = await client.patch(f"/api/jobs/{job['id']}", json={"expires_at": "2031-06-01T12:00:00"}, headers=employer)

    assert job["expires_at"] in ("2030-01-01T00:00:00Z", "2030-01-01T00:00:00+00:00")
    assert updated.status_code == 200, updated.text
    assert updated.json()["expires_at"] in ("2031-06-01T12:00:00Z", "2031-06-01T12:00:00+00:00")


async def test_an_unconfirmed_account_cannot_post_or_apply_but_can_read(
    client: httpx.AsyncClient, sign_up: Callable, stack: LocalStack
) -> None:
    from backend_app.auth.dependencies import EMAIL_NOT_VERIFIED

    acme = await sign_up("acme", "employer")
    job = await post_job(client, acme)
    newcomer = await sign_up("initech", "employer", verified=False)
    seeker = await sign_up("sam", "job_seeker", verified=False)
    stack.wait_for_replicas()

    posted = await client.post("/api/jobs", json=JOB, headers=newcomer)
    applied = await client.post(f"/api/jobs/{job['id']}/apply", json={}, headers=seeker)
    listed = await client.get("/api/jobs", headers=seeker)
    one = await client.get(f"/api/jobs/{job['id']}", headers=seeker)

    assert (posted.status_code, posted.json()["detail"]) == (403, EMAIL_NOT_VERIFIED)
    assert (applied.status_code, applied.json()["detail"]) == (403, EMAIL_NOT_VERIFIED)
    assert listed.status_code == 200
    assert [j["id"] for j in listed.json()["items"]] == [job["id"]]
    assert one.status_code == 200
    assert stack.primary is not None
    assert stack.primary.psql("SELECT count(*) FROM applications") == "0"


async def test_a_past_expiry_is_refused_on_create(client: httpx.AsyncClient, sign_up: Callable) -> None:
    employer = await sign_up("acme", "employer")

    past = await client.post("/api/jobs", json={**JOB, "expires_at": "2020-01-01T00:00:00Z"}, headers=employer)
    future = await client.post("/api/jobs", json={**JOB, "expires_at": "2099-01-01T00:00:00Z"}, headers=employer)

    assert past.status_code == 422
    [error] = past.json()["errors"]
    assert error["loc"] == ["body", "expires_at"]
    assert "future" in error["msg"]
    assert future.status_code == 201


async def apply_to(client: httpx.AsyncClient, job: dict, headers: Headers) -> dict:
    response = await client.post(f"/api/jobs/{job['id']}/apply", json={"cover_letter": "Hello"}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def stage_path(job: dict, application: dict) -> str:
    return f"/api/jobs/{job['id']}/applications/{application['id']}"


async def test_the_employer_moves_an_application_forwards_until_a_final_stage(
    client: httpx.AsyncClient, sign_up: Callable, stack: LocalStack
) -> None:
    acme = await sign_up("acme", "employer")
    globex = await sign_up("globex", "employer")
    seeker = await sign_up("sam", "job_seeker")
    job = await post_job(client, acme)
    other_job = await post_job(client, acme, title="Gardener")
    application = await apply_to(client, job, seeker)
    path = stage_path(job, application)
    assert (application["status"], application["status_changed_at"]) == ("submitted", None)

    by_other_employer = await client.patch(path, json={"status": "reviewed"}, headers=globex)
    by_applicant = await client.patch(path, json={"status": "hired"}, headers=seeker)
    back_to_submitted = await client.patch(path, json={"status": "submitted"}, headers=acme)
    withdrawn_by_employer = await client.patch(path, json={"status": "withdrawn"}, headers=acme)
    through_other_job = await client.patch(
        stage_path(other_job, application), json={"status": "reviewed"}, headers=acme
    )
    unknown = await client.patch(
        f"/api/jobs/{job['id']}/applications/999999", json={"status": "reviewed"}, headers=acme
    )
    reviewed = await client.patch(path, json={"status": "reviewed"}, headers=acme)
    reviewed_again = await client.patch(path, json={"status": "reviewed"}, headers=acme)
    interview = await client.patch(path, json={"status": "interview"}, headers=acme)
    backwards = await client.patch(path, json={"status": "reviewed"}, headers=acme)
    hired = await client.patch(path, json={"status": "hired"}, headers=acme)
    rejected_after = await client.patch(path, json={"status": "rejected"}, headers=acme)
    withdrawn_after = await client.post(f"{path}/withdraw", headers=seeker)

    assert by_other_employer.status_code == 403
    assert by_applicant.status_code == 403
    assert back_to_submitted.status_code == withdrawn_by_employer.status_code == 422
    assert through_other_job.status_code == unknown.status_code == 404
    assert unknown.json()["detail"] == "No such application to this job."
    assert (reviewed.status_code, reviewed.json()["status"]) == (200, "reviewed")
    assert reviewed.json()["status_changed_at"] is not None
    assert reviewed_again.status_code == 409
    assert reviewed_again.json()["detail"] == "This application is already reviewed; it can only move to a later stage."
    assert (interview.status_code, interview.json()["status"]) == (200, "interview")
    assert backwards.status_code == 409
    assert (hired.status_code, hired.json()["status"]) == (200, "hired")
    assert rejected_after.status_code == withdrawn_after.status_code == 409
    assert rejected_after.json()["detail"] == withdrawn_after.json()["detail"] == "This application is already hired."

    stack.wait_for_replicas()
    for_employer = (await client.get(f"/api/jobs/{job['id']}/applications", headers=acme)).json()
    mine = (await client.get("/api/users/me/applications", headers=seeker)).json()
    assert [a["status"] for a in for_employer["items"]] == [a["status"] for a in mine["items"]] == ["hired"]
    assert mine["items"][0]["status_changed_at"] == hired.json()["status_changed_at"]


async def test_only_the_applicant_withdraws_and_only_once(
    client: httpx.AsyncClient, sign_up: Callable, stack: LocalStack
) -> None:
    acme = await sign_up("acme", "employer")
    seeker = await sign_up("sam", "job_seeker")
    other_seeker = await sign_up("kim", "job_seeker")
    job = await post_job(client, acme)
    application = await apply_to(client, job, seeker)
    path = stage_path(job, application)
    await client.patch(path, json={"status": "interview"}, headers=acme)

    by_employer = await client.post(f"{path}/withdraw", headers=acme)
    by_someone_else = await client.post(f"{path}/withdraw", headers=other_seeker)
    withdrawn = await client.post(f"{path}/withdraw", headers=seeker)
    again = await client.post(f"{path}/withdraw", headers=seeker)
    moved_after = await client.patch(path, json={"status": "hired"}, headers=acme)

    assert by_employer.status_code == by_someone_else.status_code == 403
    assert by_someone_else.json()["detail"] == "Only the applicant can withdraw an application."
    assert (withdrawn.status_code, withdrawn.json()["status"]) == (200, "withdrawn")
    assert again.status_code == moved_after.status_code == 409
    assert again.json()["detail"] == "This application is already withdrawn."
    stack.wait_for_replicas()
    listed = (await client.get(f"/api/jobs/{job['id']}/applications", headers=acme)).json()
    assert [a["status"] for a in listed["items"]] == ["withdrawn"]


async def test_concurrent_changes_of_one_application_take_turns(
    client: httpx.AsyncClient, sign_up: Callable, stack: LocalStack
) -> None:
    import asyncio

    acme = await sign_up("acme", "employer")
    seeker = await sign_up("sam", "job_seeker")
    job = await post_job(client, acme)
    for round_number in range(5):
        application = await apply_to(client, job, seeker)
        path = stage_path(job, application)

        answers = await asyncio.gather(
            client.patch(path, json={"status": "hired"}, headers=acme),
            client.patch(path, json={"status": "rejected"}, headers=acme),
            client.post(f"{path}/withdraw", headers=seeker),
        )

        assert sorted(a.status_code for a in answers) == [200, 409, 409], round_number
        [winner] = [a.json()["status"] for a in answers if a.status_code == 200]
        assert stack.primary is not None
        assert stack.primary.psql(f"SELECT status FROM applications WHERE id = {application['id']}") == winner
        assert stack.primary.psql(
            "SELECT count(*) FROM outbox_messages WHERE task_id LIKE 'application-status-%'"
        ) == str(round_number + 1)
        stack.primary.psql(f"DELETE FROM applications WHERE id = {application['id']}")


async def test_each_stage_emails_the_applicant(
    client: httpx.AsyncClient, sign_up: Callable, mail_workers: SmtpSink
) -> None:
    acme = await sign_up("acme", "employer")
    seeker = await sign_up("sam", "job_seeker")
    job = await post_job(client, acme)
    application = await apply_to(client, job, seeker)
    path = stage_path(job, application)

    assert (await client.patch(path, json={"status": "interview"}, headers=acme)).status_code == 200
    assert (await client.post(f"{path}/withdraw", headers=seeker)).status_code == 200

    def about_the_application(mails: list) -> list:
        return [m for m in mails if m["Subject"].startswith("Your application for")]

    mails = about_the_application(await wait_for_mail(mail_workers, "sam@example.com", count=3))  # welcome + 2
    assert sorted(m["Subject"] for m in mails) == [
        "Your application for Senior Python Engineer: Interview",
        "Your application for Senior Python Engineer: Withdrawn",
    ]
    for mail in mails:
        text = mail.get_body(("plain",)).get_content()
        assert "Hello Sam Tester" in text
        assert f"http://localhost:8000/applications/{application['id']}" in text
    assert not about_the_application(mail_workers.to("acme@example.com"))
