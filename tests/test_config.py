"""Settings: durations, sizes and the TUSD_* environment round trip used by worker processes."""

from __future__ import annotations

import argparse
from dataclasses import fields

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tusd_py.config import ServeConfig, env_name, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("90", 90.0),
        ("90s", 90.0),
        ("1.5s", 1.5),
        ("250ms", 0.25),
        ("15m", 900.0),
        ("24h", 86400.0),
        ("7d", 604800.0),
        (" 3s ", 3.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "-1s", "1.s", ".5s", "1 s", "1w", "1sec", "ten", "1e3"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("1048576", 1048576),
        ("1K", 1024),
        ("500M", 500 * 1024**2),
        ("10G", 10 * 1024**3),
        ("2T", 2 * 1024**4),
        ("1KiB", 1024),
        ("3mb", 3 * 1024**2),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "M", "-1", "1.5G", "1P", "1 G", "1B", "abc"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_from_env_reads_every_setting() -> None:
    environ = {
        "TUSD_HOST": "0.0.0.0",
        "TUSD_PORT": "8080",
        "TUSD_UPLOAD_DIR": "/srv/up",
        "TUSD_BASE_PATH": "/up/",
        "TUSD_MAX_SIZE": "1G",
        "TUSD_WORKERS": "4",
        "TUSD_BEHIND_PROXY": "true",
        "TUSD_CORS_ALLOW_ORIGIN": "https://.*\\.example",
        "TUSD_EXPIRE_AFTER": "2h",
        "TUSD_READ_TIMEOUT": "30s",
        "TUSD_LOCK_TIMEOUT": "500ms",
        "UNRELATED": "x",
    }
    assert ServeConfig.from_env(environ) == ServeConfig(
        host="0.0.0.0",
        port=8080,
        upload_dir="/srv/up",
        base_path="/up/",
        max_size=1024**3,
        workers=4,
        behind_proxy=True,
        cors_allow_origin="https://.*\\.example",
        expire_after=7200.0,
        read_timeout=30.0,
        lock_timeout=0.5,
    )


def test_empty_env_gives_defaults() -> None:
    assert ServeConfig.from_env({}) == ServeConfig()


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("yes", True), ("ON", True), ("0", False), ("no", False), ("", False)]
)
def test_switch_values(raw: str, expected: bool) -> None:
    assert ServeConfig.from_env({"TUSD_BEHIND_PROXY": raw}).behind_proxy is expected


def test_bad_env_value_is_an_error() -> None:
    with pytest.raises(ValueError):
        ServeConfig.from_env({"TUSD_MAX_SIZE": "lots"})


def test_every_setting_has_an_env_variable() -> None:
    assert env_name("read_timeout") == "TUSD_READ_TIMEOUT"
    defaults = ServeConfig()
    expected = {env_name(f.name) for f in fields(ServeConfig) if getattr(defaults, f.name) is not None}
    assert set(defaults.to_env()) == expected


durations = st.one_of(
    st.integers(min_value=0, max_value=10**7).map(float),
    st.builds(
        parse_duration,
        st.builds(
            "{}{}".format,
            st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False, allow_infinity=False).map(str),
            st.sampled_from(["", "s", "m", "h", "d"]),
        ),
    ),
)
configs = st.builds(
    ServeConfig,
    host=st.sampled_from(["127.0.0.1", "0.0.0.0", "::1", "localhost"]),
    port=st.integers(min_value=0, max_value=65535),
    upload_dir=st.text(alphabet="abc/._- ", min_size=1, max_size=20),
    base_path=st.sampled_from(["/", "/files/", "/a/b/"]),
    max_size=st.integers(min_value=0, max_value=2**63 - 1),
    workers=st.integers(min_value=1, max_value=64),
    behind_proxy=st.booleans(),
    cors_allow_origin=st.one_of(st.none(), st.just("*"), st.text(alphabet="abc.*\\:/-", min_size=1, max_size=20)),
    expire_after=durations,
    read_timeout=durations,
    lock_timeout=durations,
    hooks_http=st.one_of(st.none(), st.just("http://127.0.0.1:9/hook")),
    hooks_dir=st.one_of(st.none(), st.just("hooks")),
    hooks_enabled_events=st.lists(st.sampled_from(["pre-create", "post-finish", "post-receive"]), max_size=3).map(
        tuple
    ),
    hooks_http_forward_headers=st.lists(st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,15}", fullmatch=True), max_size=3).map(
        tuple
    ),
    hooks_http_retry=st.integers(min_value=0, max_value=10),
    hooks_http_backoff=durations,
    hooks_http_timeout=durations,
    hooks_secret=st.one_of(st.none(), st.text(alphabet="abcXYZ019+/=", min_size=1, max_size=20)),
    progress_hooks_interval=durations,
    expose_metrics=st.booleans(),
    metrics_port=st.one_of(st.none(), st.integers(min_value=1, max_value=65535)),
    access_log=st.booleans(),
    log_format=st.sampled_from(["text", "json"]),
    shutdown_timeout=durations,
    tls_certificate=st.one_of(st.none(), st.just("cert.pem")),
    tls_key=st.one_of(st.none(), st.just("key.pem")),
    locker=st.sampled_from([None, "memory", "file", "redis://127.0.0.1:6379/0"]),
    locker_expiry=durations,
    s3_bucket=st.one_of(st.none(), st.just("uploads")),
    s3_endpoint=st.one_of(st.none(), st.just("http://127.0.0.1:7480")),
    s3_region=st.one_of(st.none(), st.just("eu-west-1")),
    s3_prefix=st.sampled_from(["", "tus/"]),
    s3_part_size=st.integers(min_value=5 * 1024**2, max_value=5 * 1024**3),
    s3_path_style=st.booleans(),
)


@given(configs)
def test_to_env_round_trips(config: ServeConfig) -> None:
    assert ServeConfig.from_env(config.to_env()) == config


def test_to_env_round_trips_sub_millisecond_durations() -> None:
    config = ServeConfig(workers=2, read_timeout=parse_duration("0.05ms"))
    assert ServeConfig.from_env(config.to_env()) == config


def test_arguments_default_to_env_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUSD_PORT", "9999")
    monkeypatch.setenv("TUSD_READ_TIMEOUT", "5s")
    parser = argparse.ArgumentParser()
    ServeConfig.add_arguments(parser)
    config = ServeConfig.from_arguments(parser.parse_args(["--read-timeout", "2m", "--behind-proxy"]))
    assert config.port == 9999
    assert config.read_timeout == 120.0
    assert config.behind_proxy is True


def test_operations_settings_from_env() -> None:
    config = ServeConfig.from_env(
        {
            "TUSD_EXPOSE_METRICS": "1",
            "TUSD_METRICS_PORT": "9100",
            "TUSD_ACCESS_LOG": "0",
            "TUSD_LOG_FORMAT": "JSON",
            "TUSD_SHUTDOWN_TIMEOUT": "30s",
            "TUSD_TLS_CERTIFICATE": "/etc/cert.pem",
            "TUSD_TLS_KEY": "/etc/key.pem",
        }
    )
    assert (config.expose_metrics, config.metrics_port, config.access_log) == (True, 9100, False)
    assert (config.log_format, config.shutdown_timeout) == ("json", 30.0)
    assert (config.tls_certificate, config.tls_key) == ("/etc/cert.pem", "/etc/key.pem")
    assert config.problems() == []


@pytest.mark.parametrize(("name", "raw"), [("TUSD_LOG_FORMAT", "xml"), ("TUSD_METRICS_PORT", "70000")])
def test_operations_settings_refuse_bad_values(name: str, raw: str) -> None:
    with pytest.raises(ValueError):
        ServeConfig.from_env({name: raw})


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (ServeConfig(tls_certificate="cert.pem"), "--tls-key"),
        (ServeConfig(tls_key="key.pem"), "--tls-certificate"),
        (ServeConfig(metrics_port=9100, workers=2), "--workers 1"),
        (ServeConfig(metrics_port=1080), "differ from --port"),
        (ServeConfig(locker="memory", workers=2), "--locker memory"),
        (ServeConfig(s3_endpoint="http://127.0.0.1:7480"), "need --s3-bucket"),
        (ServeConfig(s3_path_style=True), "need --s3-bucket"),
    ],
)
def test_settings_that_cannot_work_together(config: ServeConfig, problem: str) -> None:
    assert any(problem in found for found in config.problems())


def test_scale_out_settings_from_env() -> None:
    config = ServeConfig.from_env(
        {
            "TUSD_LOCKER": "redis://10.0.0.5:6379/2",
            "TUSD_LOCKER_EXPIRY": "15s",
            "TUSD_S3_BUCKET": "media",
            "TUSD_S3_ENDPOINT": "http://10.0.0.6:7480",
            "TUSD_S3_REGION": "eu-west-1",
            "TUSD_S3_PREFIX": "tus/",
            "TUSD_S3_PART_SIZE": "16M",
            "TUSD_S3_PATH_STYLE": "1",
        }
    )
    assert (config.locker, config.locker_expiry) == ("redis://10.0.0.5:6379/2", 15.0)
    assert (config.s3_bucket, config.s3_endpoint, config.s3_region) == ("media", "http://10.0.0.6:7480", "eu-west-1")
    assert (config.s3_prefix, config.s3_part_size, config.s3_path_style) == ("tus/", 16 * 1024**2, True)
    assert config.problems() == []


@pytest.mark.parametrize(
    ("name", "raw", "reason"),
    [
        ("TUSD_LOCKER", "zookeeper://x", "not a locker"),
        ("TUSD_LOCKER", "Memory", "not a locker"),
        ("TUSD_S3_PART_SIZE", "4M", "at least 5 MiB"),
        ("TUSD_S3_PART_SIZE", "lots", "not a size"),
    ],
)
def test_scale_out_settings_refuse_bad_values(name: str, raw: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        ServeConfig.from_env({name: raw})
