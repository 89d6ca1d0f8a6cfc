"""The redis+sentinel:// URL form: what it names, what it refuses, and the URL a connection gives back."""

from __future__ import annotations

import pytest
from redis.sentinel import SentinelConnectionPool

from rq_serviceq import connect
from rq_serviceq.http.config import HttpConfig
from rq_serviceq.store.connection import (
    SentinelAwareRedis,
    connection_pool,
    connection_url,
    parse_sentinel_url,
)
from rq_serviceq.worker.launcher import worker_command


def test_the_url_names_sentinels_service_db_logins_and_options() -> None:
    url = "redis+sentinel://app:p%40ss@10.0.0.1:26379,[::1]:26380,s3/orders/2?sentinel_password=sp&socket_timeout=1.5"
    target = parse_sentinel_url(url)
    assert target.sentinels == [("10.0.0.1", 26379), ("::1", 26380), ("s3", 26379)]
    assert (target.service_name, target.db, target.username, target.password) == ("orders", 2, "app", "p@ss")
    assert target.sentinel_kwargs() == {
        "socket_timeout": 1.5, "socket_connect_timeout": 1.5, "username": None, "password": "sp"
    }  # fmt: skip
    assert target.connection_kwargs()["socket_timeout"] == 1.5
    plain = parse_sentinel_url("redis+sentinel://:pw@h:1/svc")
    assert (plain.db, plain.username, plain.password, plain.options) == (0, None, "pw", {})


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+sentinel://h:1", "no service name"),
        ("redis+sentinel://h:1/", "no service name"),
        ("redis+sentinel:///svc", "empty sentinel address"),
        ("redis+sentinel://h:1,/svc", "empty sentinel address"),
        ("redis+sentinel://h:port/svc", "bad port 'port'"),
        ("redis+sentinel://h:70000/svc", "bad port"),
        ("redis+sentinel://h:1/svc/zero", "the db must be a number"),
        ("redis+sentinel://h:1/svc/0/x", "too many path parts"),
        ("redis+sentinel://h:1/svc?sentinel_pasword=x", "unknown option 'sentinel_pasword'"),
        ("redis+sentinel://h:1/svc?socket_timeout=0", "socket_timeout must be a number of seconds above 0"),
        ("redis+sentinel://h:1/svc?socket_timeout=1&socket_timeout=2", "given more than once"),
    ],
)
def test_a_malformed_url_is_a_clear_error(url: str, why: str) -> None:
    with pytest.raises(ValueError, match="bad Sentinel URL") as err:
        connect(url)
    assert why in str(err.value) and "redis+sentinel://[[user]:password@]host:port" in str(err.value)


def test_an_error_hides_the_passwords() -> None:
    with pytest.raises(ValueError) as err:
        parse_sentinel_url("redis+sentinel://u:topsecret@h:1/svc/x?sentinel_password=alsosecret")
    assert "topsecret" not in str(err.value) and "alsosecret" not in str(err.value) and "u:***@" in str(err.value)


def test_connection_url_gives_the_sentinel_url_back() -> None:
    url = "redis+sentinel://app:pw@127.0.0.1:26379,127.0.0.1:26380/orders/2?sentinel_password=sp"
    conn = connect(url)  # no round trip until a command
    assert isinstance(conn.connection_pool, SentinelConnectionPool)
    assert connection_url(conn) == url
    assert connection_url(conn, hide_password=True) == (
        "redis+sentinel://app:***@127.0.0.1:26379,127.0.0.1:26380/orders/2?sentinel_password=***"
    )
    assert connection_url(connect(connection_url(conn))) == url
    timed = connect("redis+sentinel://h:1/svc?socket_timeout=3&sentinel_socket_timeout=0.5")
    assert connection_url(timed) == "redis+sentinel://h:1/svc/0?socket_timeout=3&sentinel_socket_timeout=0.5"


def test_every_builder_takes_the_form() -> None:
    url = "redis+sentinel://127.0.0.1:26379/orders"
    blocking = connection_pool(url, blocking=True, max_connections=4, timeout=1)
    assert isinstance(blocking, SentinelConnectionPool) and blocking.max_connections == 4
    rq_style = SentinelAwareRedis.from_url(url)  # what `rq worker --connection-class ...` calls
    assert isinstance(rq_style, SentinelAwareRedis) and connection_url(rq_style).startswith(url)
    assert isinstance(SentinelAwareRedis.from_url("redis://localhost:6379/3"), SentinelAwareRedis)
    assert "--connection-class" in worker_command("drag", url=url)
    assert "--connection-class" not in worker_command("drag", url="redis://localhost:6379/0")
    with pytest.raises(ValueError, match=r"redis_url: .*bad Sentinel URL"):
        HttpConfig.from_env({"RQ_REDIS_URL": "redis+sentinel://h:1"})


def test_a_failover_is_an_outage_not_a_crash() -> None:
    from redis.exceptions import ReadOnlyError, ResponseError
    from redis.sentinel import MasterNotFoundError

    from rq_serviceq.store.outage import expected, refuses_writes

    for exc in (ReadOnlyError("You can't write against a read only replica."),
                MasterNotFoundError("No master found for 'mymaster'"),
                ResponseError("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
                ResponseError("NOREPLICAS Not enough good replicas to write.")):  # fmt: skip
        assert expected(exc), exc
    assert refuses_writes(ReadOnlyError("x")) and not refuses_writes(MasterNotFoundError("x"))
    assert not expected(ResponseError("ERR unknown command"))
