"""A fresh PostgreSQL database for each test that asks for one, dropped after it. The server is the one
at $DSE_TEST_POSTGRES (an admin URL; .ci/run starts one with pg_ctl where none answers), else the one
on 127.0.0.1:5432 (trust auth, user postgres). Without a server the test is skipped with a loud reason."""
from __future__ import annotations

import os
import uuid
import warnings

import pytest

ADMIN = os.environ.get("DSE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def _connect(url: str):
    import psycopg
    return psycopg.connect(url, connect_timeout=5, autocommit=True)


@pytest.fixture
def postgres() -> str:
    """The URL of a new, empty database on the test server."""
    try:
        admin = _connect(ADMIN)
    except Exception as exc:  # noqa: BLE001 (any failure to reach the server means: no server)
        reason = (f"NO POSTGRESQL SERVER: {ADMIN} does not answer ({str(exc).strip().splitlines()[0]}); "
                  "run .ci/run (it starts one with pg_ctl) or set DSE_TEST_POSTGRES to an admin URL")
        warnings.warn(reason, stacklevel=1)
        pytest.skip(reason)
    name = f"dse_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def dump(url: str) -> str:
    """Every row of every table of the database, as one text (to look for what must not be stored)."""
    conn = _connect(url)
    out = []
    with conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        for (table,) in cur.fetchall():
            cur.execute(f'SELECT * FROM "{table}"')
            out.append(f"{table}: {cur.fetchall()!r}")
    conn.close()
    return "\n".join(out)
