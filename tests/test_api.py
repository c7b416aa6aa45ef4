"""The HTTP API against a real uvicorn server and a real database: status codes,
pagination, filters, authentication, 404/400."""

from __future__ import annotations

import asyncio
import os
import urllib.parse
import uuid
from collections.abc import AsyncIterator

import harness
import pool_jobs
import psycopg
import pytest
import workflow_jobs as wj
from api_helpers import (
    TOKEN,
    ApiServer,
    ClashingApiPlugin,
    HelloApiPlugin,
    api_server,
    fetch,
)
from psycopg import sql

from worker import App, Worker
from worker.api import create_app
from worker.api.server import check_database
from worker.errors import ConfigurationError
from worker.plugins.workflow import Workflow, WorkflowPlugin
from worker.plugins.workflow.api import WorkflowApiPlugin

UNKNOWN = "00000000-0000-0000-0000-000000000000"


def diamond(name: str = "diamond") -> Workflow:
    return (
        Workflow(name)
        .add("top", wj.ok)
        .add("left", wj.ok, ["top"])
        .add("right", wj.sync_ok, ["top"])
        .add("bottom", wj.ok, ["left", "right"])
    )


def parked(name: str) -> Workflow:
    """A workflow whose root job waits in a queue no worker serves."""
    return Workflow(name).add("only", wj.ok.job.with_queue("parked"))


@pytest.fixture
async def server(app: App) -> AsyncIterator[ApiServer]:
    app.plugins.append(WorkflowPlugin())
    async with api_server(app) as running:
        yield running


# -- authentication --------------------------------------------------------------------


async def test_every_api_path_needs_the_token(server: ApiServer) -> None:
    for path in ("/api/v1/workflows", "/api/v1/jobs", "/api/v1/jobs/summary", "/api/v1/info"):
        missing = await server.get(path, token=None)
        assert missing.status == 401, path
        assert missing.headers["www-authenticate"] == 'Bearer realm="pgdag"'
        assert "Authorization: Bearer" in missing.body["error"]
        wrong = await server.get(path, token=TOKEN[:-1] + "X")
        assert wrong.status == 401, path
        assert "not the one" in wrong.body["error"]
        assert (await server.get(path)).status == 200, path
    # a path that serves nothing answers 401, not 404, to a caller without the token
    assert (await server.get("/api/v1/nothing", token=None)).status == 401
    assert (await server.get("/api/v1/nothing")).status == 404


async def test_only_a_bearer_token_counts(server: ApiServer) -> None:
    for header in (f"Basic {TOKEN}", TOKEN, f"Bearer  {TOKEN}x", "Bearer"):
        reply = await asyncio.to_thread(
            fetch, server.base + "/api/v1/jobs", headers={"Authorization": header}
        )
        assert reply.status == 401, header
    lower = await asyncio.to_thread(
        fetch, server.base + "/api/v1/jobs", headers={"Authorization": f"bearer {TOKEN}"}
    )
    assert lower.status == 200


async def test_dashboard_page_and_static_files_need_no_token(server: ApiServer) -> None:
    page = await server.get("/", token=None)
    assert page.status == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/static/dashboard.js" in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    for name in ("dashboard.js", "dashboard.css"):
        static = await server.get(f"/static/{name}", token=None)
        assert static.status == 200, name
    # nothing outside the package's static directory
    assert (await server.get("/static/../auth.py", token=None)).status in (400, 404)
    # nothing in the page fetches from elsewhere
    for text in (page.text, (await server.get("/static/dashboard.js", token=None)).text):
        assert "http://" not in text.replace('"http://www.w3.org/2000/svg"', "")
        assert "https://" not in text


async def test_no_auth_serves_without_a_token(app: App) -> None:
    async with api_server(app, token=None) as server:
        assert (await server.get("/api/v1/jobs", token=None)).status == 200
        assert (await server.get("/api/v1/info", token=None)).body["plugins"] == ["jobs"]


# -- workflows -------------------------------------------------------------------------


async def test_workflows_are_listed_newest_first_in_pages(server: ApiServer, app: App) -> None:
    first = await WorkflowPlugin.push(app, parked("first"))
    # five in one call: one created_at, so the id breaks the tie
    batch = await WorkflowPlugin.push_many(app, [parked(f"batch {i}") for i in range(5)])
    last = await WorkflowPlugin.push(app, parked("last"))

    everything = await server.get("/api/v1/workflows")
    assert everything.status == 200
    assert everything.body["limit"] == 50
    assert everything.body["next_cursor"] is None
    listed = [w["id"] for w in everything.body["workflows"]]
    assert listed == [last, *sorted(batch, reverse=True), first]
    one = everything.body["workflows"][0]
    assert one["name"] == "last"
    assert one["state"] == "pending"
    assert (one["steps_total"], one["steps_succeeded"]) == (1, 0)
    assert one["created_at"] <= everything.body["now"]

    pages, cursor = [], None
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        reply = await server.get("/api/v1/workflows" + query)
        assert reply.status == 200
        pages.append([w["id"] for w in reply.body["workflows"]])
        cursor = reply.body["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == listed

    # a page does not shift when workflows are added meanwhile
    cursor = (await server.get("/api/v1/workflows?limit=3")).body["next_cursor"]
    second_page = f"/api/v1/workflows?limit=3&cursor={cursor}"
    before = (await server.get(second_page)).body["workflows"]
    await WorkflowPlugin.push(app, parked("later"))
    assert (await server.get(second_page)).body["workflows"] == before


async def test_workflow_filters(server: ApiServer, app: App) -> None:
    async with Worker(app, processes=1, concurrency=5):
        done = await WorkflowPlugin.push(app, diamond("etl"))
        await WorkflowPlugin.wait_for_workflow(app, done, timeout=60)
    waiting = await WorkflowPlugin.push(app, parked("etl"))
    other = await WorkflowPlugin.push(app, parked("report"))

    async def ids(query: str) -> list[str]:
        reply = await server.get("/api/v1/workflows" + query)
        assert reply.status == 200, reply.text
        return [w["id"] for w in reply.body["workflows"]]

    assert await ids("?state=completed") == [done]
    assert await ids("?state=pending") == [other, waiting]
    assert await ids("?state=pending&state=completed") == [other, waiting, done]
    assert await ids("?state=pending,completed") == [other, waiting, done]
    assert await ids("?name=etl") == [waiting, done]
    assert await ids("?name=etl&state=completed") == [done]
    assert await ids("?state=failed") == []
    # the filter is a value, never SQL
    assert await ids("?name=" + urllib.parse.quote("etl' OR 'x'='x")) == []


@pytest.mark.parametrize(
    ("query", "culprit"),
    [
        ("?state=finished", "state='finished'"),
        ("?limit=0", "limit='0'"),
        ("?limit=501", "limit='501'"),
        ("?limit=ten", "limit='ten'"),
        ("?cursor=not-a-cursor", "cursor='not-a-cursor'"),
        ("?cursor=WzEsMl0", "cursor='WzEsMl0'"),  # valid base64 of [1,2]
        ("?status=running", "'status'"),
    ],
)
async def test_bad_workflow_queries_are_400_naming_the_culprit(
    server: ApiServer, query: str, culprit: str
) -> None:
    reply = await server.get("/api/v1/workflows" + query)
    assert reply.status == 400
    assert culprit in reply.body["error"]


async def test_one_workflow_with_its_steps_and_layout(server: ApiServer, app: App) -> None:
    async with Worker(app, processes=1, concurrency=5):
        workflow_id = await WorkflowPlugin.push(app, diamond())
        await WorkflowPlugin.wait_for_workflow(app, workflow_id, timeout=60)
    reply = await server.get(f"/api/v1/workflows/{workflow_id}")
    assert reply.status == 200
    body = reply.body
    assert (body["id"], body["name"], body["state"]) == (workflow_id, "diamond", "completed")
    assert body["completed_at"] and body["created_at"] and body["now"]
    steps = {s["step_id"]: s for s in body["steps"]}
    assert list(steps) == ["top", "left", "right", "bottom"]
    assert steps["bottom"]["dependencies"] == ["left", "right"]
    assert {s["state"] for s in steps.values()} == {"succeeded"}
    assert steps["right"]["func"] == "workflow_jobs.sync_ok"
    for step in steps.values():
        assert step["job_id"] and step["attempts"] == 1 and step["max_attempts"] == 1
        assert step["started_at"] <= step["completed_at"]
        assert step["errors"] == []
    assert [(steps[s]["layer"]) for s in steps] == [0, 1, 1, 2]
    assert {steps["left"]["order"], steps["right"]["order"]} == {0, 1}


async def test_a_failed_step_shows_its_error(server: ApiServer, app: App) -> None:
    flow = Workflow("fails").add("a", wj.ok).add("b", wj.boom, ["a"]).add("c", wj.ok, ["b"])
    async with Worker(app, processes=1, concurrency=5):
        workflow_id = await WorkflowPlugin.push(app, flow)
        await WorkflowPlugin.wait_for_workflow(app, workflow_id, timeout=60)
    body = (await server.get(f"/api/v1/workflows/{workflow_id}")).body
    assert body["state"] == "failed"
    steps = {s["step_id"]: s for s in body["steps"]}
    (error,) = steps["b"]["errors"]
    assert error["message"] == "step failed on purpose"
    assert error["type"] == "RuntimeError"
    assert "Traceback" in error["traceback"]
    assert steps["c"]["job_id"] is None and steps["c"]["state"] == "pending"
    assert steps["c"]["attempts"] == 0


async def test_unknown_and_malformed_workflow_ids(server: ApiServer) -> None:
    unknown = await server.get(f"/api/v1/workflows/{UNKNOWN}")
    assert unknown.status == 404
    assert unknown.body == {"error": f"no workflow with id {UNKNOWN}"}
    malformed = await server.get("/api/v1/workflows/not-a-uuid")
    assert malformed.status == 400
    assert malformed.body == {"error": "'not-a-uuid' is not a workflow id (a UUID)"}


# -- jobs --------------------------------------------------------------------------------


async def test_jobs_list_filters_and_pages(server: ApiServer, app: App) -> None:
    a_jobs = await app.push_many([pool_jobs.echo.job.with_kwargs(n=i) for i in range(4)])
    b_jobs = await app.push_many(
        [pool_jobs.echo.job.with_kwargs(n=i).with_queue("b") for i in range(3)]
    )
    cancelled = b_jobs[0]
    await app.cancel_job(cancelled)

    reply = await server.get("/api/v1/jobs")
    assert reply.status == 200
    listed = [j["id"] for j in reply.body["jobs"]]
    assert listed == [*sorted(b_jobs, reverse=True), *sorted(a_jobs, reverse=True)]
    first = reply.body["jobs"][0]
    assert first["func"] == "pool_jobs.echo" and first["queue"] == "b"
    assert "kwargs" not in first  # the list stays small; one job has everything

    async def ids(query: str) -> list[str]:
        answer = await server.get("/api/v1/jobs" + query)
        assert answer.status == 200, answer.text
        return [j["id"] for j in answer.body["jobs"]]

    assert set(await ids("?queue=b")) == set(b_jobs)
    assert set(await ids("?queue=default,b")) == set(a_jobs + b_jobs)
    assert await ids("?state=cancelled") == [cancelled]
    assert set(await ids("?state=pending&queue=b")) == set(b_jobs) - {cancelled}
    assert await ids("?queue=nobody") == []

    pages, cursor = [], None
    while True:
        answer = await server.get("/api/v1/jobs?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        pages.append([j["id"] for j in answer.body["jobs"]])
        cursor = answer.body["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [2, 2, 2, 1]
    assert [i for p in pages for i in p] == listed

    for query in ("?state=done", "?limit=-1", "?cursor=zz", "?sort=id"):
        assert (await server.get("/api/v1/jobs" + query)).status == 400, query


async def test_jobs_summary_counts_per_queue_and_state(server: ApiServer, app: App) -> None:
    empty = await server.get("/api/v1/jobs/summary")
    assert empty.body == {"queues": {}, "states": {}, "total": 0}
    await app.push_many([pool_jobs.echo.job.with_kwargs(n=i) for i in range(3)])
    ids = await app.push_many(
        [pool_jobs.echo.job.with_kwargs(n=i).with_queue("b") for i in range(2)]
    )
    await app.cancel_job(ids[0])
    summary = (await server.get("/api/v1/jobs/summary")).body
    assert summary == {
        "queues": {"default": {"pending": 3}, "b": {"cancelled": 1, "pending": 1}},
        "states": {"pending": 4, "cancelled": 1},
        "total": 5,
    }


async def test_one_job(server: ApiServer, app: App) -> None:
    job_id = await app.push(pool_jobs.echo.job.with_kwargs(n=7).with_meta(who="test"))
    reply = await server.get(f"/api/v1/jobs/{job_id}")
    assert reply.status == 200
    assert reply.body["id"] == job_id
    assert reply.body["kwargs"] == {"n": 7}
    assert reply.body["meta"] == {"who": "test"}
    assert reply.body["state"] == "pending"
    assert reply.body["errors"] == [] and reply.body["result"] is None
    assert reply.body["workflow_id"] is None

    unknown = await server.get(f"/api/v1/jobs/{UNKNOWN}")
    assert (unknown.status, unknown.body) == (404, {"error": f"no job with id {UNKNOWN}"})
    malformed = await server.get("/api/v1/jobs/12345")
    assert (malformed.status, malformed.body) == (
        400,
        {"error": "'12345' is not a job id (a UUID)"},
    )


async def test_a_workflow_step_job_names_its_workflow(server: ApiServer, app: App) -> None:
    async with Worker(app, processes=1, concurrency=5):
        workflow_id = await WorkflowPlugin.push(app, diamond())
        await WorkflowPlugin.wait_for_workflow(app, workflow_id, timeout=60)
    steps = (await server.get(f"/api/v1/workflows/{workflow_id}")).body["steps"]
    job = (await server.get(f"/api/v1/jobs/{steps[0]['job_id']}")).body
    assert (job["workflow_id"], job["step_id"]) == (workflow_id, "top")
    assert job["state"] == "succeeded" and job["result"] == "ok"
    summary = (await server.get("/api/v1/jobs/summary")).body
    assert summary["states"] == {"succeeded": 4}


# -- the server itself ----------------------------------------------------------------------


async def test_plugins_contribute_routes(app: App) -> None:
    async with api_server(app, plugins=["api_helpers.HelloApiPlugin"]) as server:
        assert (await server.get("/api/v1/hello")).body == {"hello": "pgdag"}
        assert (await server.get("/api/v1/hello", token=None)).status == 401
        teapot = await server.get("/api/v1/hello/teapot")
        assert (teapot.status, teapot.text) == (418, "short and stout")
        refused = await server.get("/api/v1/hello/bob")
        assert (refused.status, refused.body) == (404, {"error": "nobody called bob"})
        assert (await server.get("/api/v1/info")).body["plugins"] == ["jobs", "hello"]


def test_plugins_that_cannot_be_mounted_are_named(app: App) -> None:
    with pytest.raises(ConfigurationError, match=r"'clash' both serve GET /api/v1/hello$"):
        create_app(app, plugins=[HelloApiPlugin, ClashingApiPlugin()], token=TOKEN)
    with pytest.raises(ConfigurationError, match=r"cannot import the API plugin 'nowhere\.Plugin'"):
        create_app(app, plugins=["nowhere.Plugin"], token=TOKEN)
    with pytest.raises(ConfigurationError, match="is not an API plugin"):
        create_app(app, plugins=[object()], token=TOKEN)
    # the same plugin named twice (by the App's plugins and by hand) is mounted once
    app.plugins.append(WorkflowPlugin())
    asgi = create_app(app, plugins=[WorkflowApiPlugin], token=TOKEN)
    assert asgi.state.plugins == ["jobs", "workflows"]


async def test_errors_are_json(server: ApiServer) -> None:
    missing = await server.get("/api/v2/anything")
    assert (missing.status, missing.body) == (404, {"error": "nothing at /api/v2/anything"})
    assert missing.headers["content-type"].startswith("application/json")


async def test_a_schema_with_quotes_in_its_name(pg_dsn: str, fresh_schema: str) -> None:
    async with App(pg_dsn, schema=fresh_schema, plugins=[WorkflowPlugin()]) as app:
        with pytest.raises(ConfigurationError, match="run `pgdag migrate` first"):
            await check_database(app)
        await app.migrate()
        await check_database(app)
        workflow_id = await WorkflowPlugin.push(app, parked("quoted"))
        async with api_server(app) as server:
            reply = await server.get("/api/v1/workflows")
            assert [w["id"] for w in reply.body["workflows"]] == [workflow_id]
            assert (await server.get("/api/v1/info")).body["schema"] == fresh_schema


async def test_database_failure_is_a_500_without_details(
    pg_dsn: str, fresh_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A schema that exists in name only: every query fails; the client learns
    nothing, the server's log says what and where."""
    async with App(pg_dsn, schema=fresh_schema) as app, api_server(app) as server:
        reply = await server.get("/api/v1/jobs")
        assert reply.status == 500
        assert reply.body == {"error": "internal error (the server's log has the details)"}
        assert fresh_schema not in reply.text
    (record,) = [r for r in caplog.records if r.name == "pgdag.api"]
    assert record.getMessage().startswith("GET /api/v1/jobs failed:")
    assert "does not exist" in record.getMessage()


async def test_unreachable_database_is_refused_at_start_without_the_password() -> None:
    secret = "pw-that-must-not-show"
    app = App(f"postgresql://someone:{secret}@127.0.0.1:9/nowhere?connect_timeout=5")
    with pytest.raises(ConfigurationError) as caught:
        await check_database(app)
    assert "cannot connect to the database" in str(caught.value)
    assert secret not in str(caught.value)


async def test_a_lost_database_is_a_503(admin_dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    name = f"pgdag_api_lost_{uuid.uuid4().hex[:8]}"
    template = os.environ[harness.ENV_TEMPLATE]
    create = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
        sql.Identifier(name), sql.Identifier(template)
    )
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(create)
    try:
        async with (
            App(harness.with_dbname(admin_dsn, name), schema=harness.SCHEMA) as app,
            api_server(app) as server,
        ):
            assert (await server.get("/api/v1/jobs")).status == 200
            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                conn.execute(drop)
            reply = await server.get("/api/v1/jobs")
            assert (reply.status, reply.body) == (503, {"error": "the database is unavailable"})
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(drop)
    assert any("the database is unavailable" in r.getMessage() for r in caplog.records)
