"""Job postings and applications: rules, filters, errors, and the employer's email."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from backend_app.devstack import LocalStack
from tests import accounts
from tests.conftest import SmtpSink, wait_for_mail

Headers = dict[str, str]


@pytest.fixture
def sign_up(client: httpx.AsyncClient) -> Callable:
    async def create(username: str, role: str) -> Headers:
        _, headers = await accounts.sign_up(client, username, role)
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
    assert refused.json() == {"detail": "Only employers can post jobs."}
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
    assert missing.json() == {"detail": "No such job."}


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
    assert again.json() == {"detail": "You have already applied to this job."}
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
    expired = await post_job(client, acme, expires_at="2020-01-01T00:00:00Z")
    await client.patch(f"/api/jobs/{job['id']}", json={"closed": True}, headers=acme)

    closed_answer = await client.post(f"/api/jobs/{job['id']}/apply", json={}, headers=seeker)
    expired_answer = await client.post(f"/api/jobs/{expired['id']}/apply", json={}, headers=seeker)
    unknown = await client.post("/api/jobs/999999/apply", json={}, headers=seeker)

    assert closed_answer.status_code == expired_answer.status_code == 409
    assert closed_answer.json() == {"detail": "This job is closed to new applications."}
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
