"""Task-runner plumbing: the plain-HTTP CA bundle that keeps Prefect's per-task clients cheap in workers."""

from __future__ import annotations

import os
import ssl

import pytest

from tasks.runners import plain_http_ca_file, shared_local_api


def test_plain_http_api_gets_a_one_certificate_bundle_and_https_keeps_its_own():
    ca = plain_http_ca_file("http://127.0.0.1:4200/api")
    assert ca is not None and ca.read_text().count("BEGIN CERTIFICATE") == 1
    ssl.create_default_context(cafile=str(ca))  # a bundle ssl accepts, not an empty file
    assert plain_http_ca_file("https://api.prefect.cloud/api/accounts/x") is None
    assert plain_http_ca_file(None) is None


def test_shared_local_api_sets_the_bundle_for_workers_and_restores_the_environment(monkeypatch):
    from prefect.settings import PREFECT_API_SSL_CERT_FILE, PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("PREFECT_API_SSL_CERT_FILE", "/somewhere/else.pem")
    # a configured plain-HTTP API: no server is started, only the bundle changes
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        with shared_local_api("dask") as url:
            assert url is None
            assert PREFECT_API_SSL_CERT_FILE.value().endswith("prefect-plain-http-ca.pem")
            assert os.environ["PREFECT_API_SSL_CERT_FILE"] == PREFECT_API_SSL_CERT_FILE.value()
        assert os.environ["PREFECT_API_SSL_CERT_FILE"] == "/somewhere/else.pem"
        with shared_local_api("threads") as url:  # threads share the flow's clients: nothing to change
            assert url is None and os.environ["PREFECT_API_SSL_CERT_FILE"] == "/somewhere/else.pem"


@pytest.mark.parametrize("url", ["https://example.org/api"])
def test_an_https_api_is_left_alone(url, monkeypatch):
    from prefect.settings import PREFECT_API_SSL_CERT_FILE, PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_SSL_CERT_FILE", raising=False)
    with temporary_settings(updates={PREFECT_API_URL: url}):
        before = PREFECT_API_SSL_CERT_FILE.value()
        with shared_local_api("processes") as got:
            assert got is None and PREFECT_API_SSL_CERT_FILE.value() == before
            assert "PREFECT_API_SSL_CERT_FILE" not in os.environ
