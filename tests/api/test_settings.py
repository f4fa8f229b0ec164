"""The server's settings (shoal/api/settings.py): a TOML config file with
the flags' names, the precedence flags > environment > file > defaults, and
what a real `shoal serve` does with tokens, token files, TLS and a host
beyond loopback."""
from __future__ import annotations

import argparse
import os
import shutil
import ssl
import subprocess
import sys

import httpx
import pytest

import shoal
from shoal.api.settings import DEFAULTS, add_serve_flags, exposure_warnings, resolve, serve_kwargs

from serverproc import REPO, ServerProcess, free_port

WRITE = "write-token-" + "a" * 24
READ = "read-token-" + "b" * 24


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_serve_flags(p)
    return p


def settings(argv: list[str], environ: dict[str, str] | None = None) -> dict:
    p = _parser()
    return resolve(p.parse_args(argv), p, environ or {})


def test_defaults_without_file_or_environment():
    s = settings([])
    assert s == {**DEFAULTS, "config": None}
    kw = serve_kwargs(s)
    assert (kw["data_dir"], kw["host"], kw["port"], kw["token"]) == ("./shoal-data", "127.0.0.1", 8765, [])


def test_config_file_uses_the_flags_names(tmp_path):
    (tmp_path / "tokens").write_text(f"# writers\n{WRITE}\n\n")
    cfg = tmp_path / "shoal.toml"
    cfg.write_text(f'data = "store"\nhost = "0.0.0.0"\nport = 9001\nmemory = "64MiB"\nmax-body = "1GiB"\n'
                   f'max_ingests = 3\nbody-idle-timeout = 2.5\nno-access-log = true\ntoken-file = "tokens"\n'
                   f'read-token = ["{READ}", "{READ}x"]\nretain = 1073741824\nkey = "id"\n'
                   f'max-eval-bytes = "2MiB"\nlog-level = "warning"\n')
    s = settings(["--config", str(cfg)])
    assert s["data"] == str(tmp_path / "store")  # relative to the file's folder
    assert (s["host"], s["port"], s["memory"], s["max_body"], s["max_ingests"]) == ("0.0.0.0", 9001, "64MiB", "1GiB", 3)
    assert s["body_idle_timeout"] == 2.5 and s["no_access_log"] is True and s["log_level"] == "warning"
    kw = serve_kwargs(s)
    assert kw["token"] == [WRITE] and kw["read_token"] == [READ, READ + "x"]
    assert kw["retain_bytes"] == 1 << 30 and kw["key"] == "id" and kw["max_eval_bytes"] == 2 << 20
    assert kw["access_log"] is False


def test_compression_flag_and_config_key(tmp_path):
    assert serve_kwargs(settings(["--compression", "zstd"]))["compression"] == "zstd"
    assert "compression" not in serve_kwargs(settings([]))
    cfg = tmp_path / "shoal.toml"
    cfg.write_text('compression = "zstd"\n')
    assert serve_kwargs(settings(["--config", str(cfg)]))["compression"] == "zstd"
    with pytest.raises(SystemExit):
        settings(["--compression", "gzip"])


def test_precedence_flags_environment_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'port = 9001\ndata = "/from/file"\ntoken = "{WRITE}file"\n')
    env = {"SHOAL_DATA": "/from/env", "SHOAL_TOKEN": WRITE + "env"}
    s = settings(["--config", str(cfg)], env)
    assert (s["port"], s["data"], s["token"]) == (9001, "/from/env", [WRITE + "env"])
    s = settings(["--config", str(cfg), "--port", "9002", "--data", "/from/flag", "--token", WRITE], env)
    assert (s["port"], s["data"], s["token"]) == (9002, "/from/flag", [WRITE])
    s = settings([], {"SHOAL_CONFIG": str(cfg)})
    assert s["port"] == 9001 and s["config"] == str(cfg)


@pytest.mark.parametrize("text,message", [
    ("prot = 1\n", "unknown key 'prot' (did you mean 'port'?)"),
    ("config = 'x'\n", "unknown key 'config'"),
    ('port = "80"\n', "port must be an integer"),
    ("port = 1.5\n", "port must be an integer"),
    ("memory = 'lots'\n", "memory:"),
    ("no-access-log = 1\n", "must be true or false"),
    ("token = 5\n", "must be a string or a list of strings"),
    ("log-level = 'loud'\n", "must be one of"),
    ("host = [1]\n", "host must be a string"),
    ("port = \n", "not valid TOML"),
])
def test_config_file_errors_name_the_key(tmp_path, text, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(shoal.InvalidArgument, match="config file") as info:
        settings(["--config", str(cfg)])
    assert message in str(info.value) and str(cfg) in str(info.value)


def test_missing_config_or_token_file(tmp_path):
    with pytest.raises(shoal.InvalidArgument, match="does not exist"):
        settings(["--config", str(tmp_path / "none.toml")])
    with pytest.raises(shoal.InvalidArgument, match="cannot be read"):
        serve_kwargs(settings(["--token-file", str(tmp_path / "none")]))
    (tmp_path / "empty").write_text("# nothing\n\n")
    with pytest.raises(shoal.InvalidArgument, match="holds no token"):
        serve_kwargs(settings(["--token-file", str(tmp_path / "empty")]))


def test_exposure_warnings():
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        assert exposure_warnings(host, auth=False, tls=False) == []
    for host in ("0.0.0.0", "::", "10.0.0.5", "shoal.example.com"):
        assert "WITHOUT AUTHENTICATION" in exposure_warnings(host, auth=False, tls=True)[0]
        assert "clear text" in exposure_warnings(host, auth=True, tls=False)[0]
        assert exposure_warnings(host, auth=True, tls=True) == []


# ---- a real server ----

def _serve_fails(*args: str, env: dict | None = None) -> str:
    p = subprocess.run([sys.executable, "-m", "shoal.cli", "serve", "--port", str(free_port()), *args],
                       cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 1, p.stderr
    return p.stderr


def test_serve_refuses_bad_settings(tmp_path):
    assert "read tokens need a write token" in _serve_fails("--data", str(tmp_path / "d"), "--read-token", READ)
    assert "TLS certificate file" in _serve_fails("--data", str(tmp_path / "d"), "--ssl-certfile", str(tmp_path / "no.pem"))
    bad = tmp_path / "bad.toml"
    bad.write_text("prot = 1\n")
    assert "unknown key 'prot'" in _serve_fails("--config", str(bad))


@pytest.mark.slow
def test_served_with_token_file_and_config(tmp_path, monkeypatch):
    monkeypatch.delenv("SHOAL_TOKEN", raising=False)
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{WRITE}\n")
    tokens.chmod(0o600)
    cfg = tmp_path / "shoal.toml"
    cfg.write_text(f'token-file = "tokens"\nread-token = "{READ}"\nmax-ingests = 2\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    with ServerProcess(tmp_path / "d", "--config", str(cfg), env=env) as srv:
        assert httpx.get(srv.url + "/healthz").status_code == 200
        assert httpx.get(srv.url + "/stats").status_code == 401
        with shoal.Client(srv.url, token=WRITE) as c:
            c.register_psf("a", "a")
            assert c.ingest(b'{"a": 1}\n').ingested == 1
        with shoal.Client(srv.url, token=READ) as c:
            assert [r.raw for r in c.query("a", 1)] == [b'{"a": 1}']
            with pytest.raises(shoal.AccessDenied):
                c.checkpoint()
        assert srv.stop()[0] == 0


@pytest.mark.slow
def test_warning_beyond_loopback_without_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    with ServerProcess(tmp_path / "d", "--host", "0.0.0.0", env=env) as srv:
        rc, _, out = srv.stop()
    assert rc == 0 and "WITHOUT AUTHENTICATION" in out and "!!!!" in out
    with ServerProcess(tmp_path / "d", "--host", "127.0.0.1", env=env) as srv:
        rc, _, out = srv.stop()
    assert rc == 0 and "WARNING" not in out


@pytest.mark.slow
def test_https_with_certificate(tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    trusted = ssl.create_default_context(cafile=str(cert))
    with ServerProcess(tmp_path / "d", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key), "--token", WRITE,
                       env=env, scheme="https", verify=trusted) as srv:
        assert srv.url.startswith("https://")
        with shoal.Client(srv.url, token=WRITE, verify=trusted) as c:
            c.register_psf("a", "a")
            assert c.ingest(b'{"a": 1}\n{"a": 2}\n').ingested == 2
            assert [r.raw for r in c.query("a", 2)] == [b'{"a": 2}']
        with pytest.raises(httpx.ConnectError):  # a client that does not trust the certificate
            httpx.get(srv.url + "/healthz")
        with pytest.raises(httpx.RemoteProtocolError):  # plain HTTP to an HTTPS port
            httpx.get(srv.url.replace("https", "http") + "/healthz")
        assert srv.stop()[0] == 0


def test_readme_config_file_is_valid(tmp_path):
    """The README's example config file loads: every key is a flag's name
    with a value of its type."""
    text = (REPO / "README.md").read_text()
    toml = text[text.index("```toml\n") + 8:]
    toml = toml[:toml.index("```")]
    cfg = tmp_path / "shoal.toml"
    cfg.write_text(toml)
    s = settings(["--config", str(cfg)])
    assert s["host"] == "0.0.0.0" and s["token_file"] == "/etc/shoal/write.token"
    assert s["ssl_certfile"] and s["max_body"] == "10GiB"
