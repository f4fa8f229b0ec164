"""The README's examples run as written, from a directory holding only the
sample data its first block makes (`shoal sample ...`), with the repo's
venv on PATH: the library quickstart, the HTTP curl blocks against a real
`shoal serve`, the Python client, the command line blocks, and the keyed
store blocks (which make their own records).

Two checks per block: what it prints equals an oracle computed here from
the same generated records with orjson + jmespath (tests/oracle.py), and
every output the README shows in a comment is what the block really
printed. Comments show outputs as `# -> TEXT` (after a command or print, or
on the line below it), or, in shell blocks, as a JSON answer on the line
below the command (`# {"ingested":...}`) or beside it; `...` stands for any
text. Nothing here reads ../shared.
"""
from __future__ import annotations

import collections
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from api.conftest import pairs
from oracle import Log, python_value, search
from serverproc import ServerProcess, free_port

import shoal
from shoal import sample
from shoal.cli.commands import SAMPLE_KINDS

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
VENV_BIN = Path(sys.executable).parent
OUTPUT_MARK = "-> "
# The port of the README's `make serve` examples (the command line's own server uses 8766).
README_PORT = 8765
CLI_SERVER_PORT = 8766
ACCESS_PORT = 8767  # the Access section's HTTPS server


# ---- the README's code blocks ----

def blocks(heading: str) -> list[tuple[str, str]]:
    """(language, text) of each fenced block under the heading (any level)
    named `heading`, up to the next heading."""
    found, current, fence, seen = [], None, None, False
    for line in README.read_text().splitlines(keepends=True):
        if fence is not None:
            if line.startswith("```"):
                if current == heading:
                    found.append((fence[0], fence[1]))
                fence = None
            else:
                fence[1] += line
        elif line.startswith("```"):
            fence = [line[3:].strip(), ""]
        elif line.startswith("#"):  # a heading (a shell comment inside a fence is not one)
            current = line.lstrip("#").strip()
            seen = seen or current == heading
    assert seen, f"README has no heading {heading!r}"
    return found


def block(heading: str, lang: str, index: int = 0) -> str:
    found = [body for language, body in blocks(heading) if language == lang]
    assert len(found) > index, f"README section {heading!r} has no {lang} block #{index}"
    return found[index]


def matches(shown: str, line: str) -> bool:
    """A line the README shows equals one printed; `...` stands for any text."""
    pattern = ".*?".join(re.escape(part) for part in shown.strip().split("..."))
    return re.fullmatch(pattern, line.strip()) is not None


def assert_shown(shown: list[str], printed: list[str], what: str) -> None:
    """Each shown line matches a printed one, in the order shown."""
    rest = iter(printed)
    for line in shown:
        assert any(matches(line, p) for p in rest), f"{what}: the README shows {line!r}, not printed:\n" + \
            "\n".join(printed[:40])


def python_outputs(code: str) -> list[str]:
    """The `# -> ` comments of a Python block: what it says it prints."""
    return [m.group(1) for m in re.finditer(rf"#\s*{re.escape(OUTPUT_MARK)}(.*)$", code, re.M)]


# ---- shell blocks: parsed into steps, run in one bash ----

@dataclass
class Step:
    command: str                                    # as in the README (continuation lines kept)
    shown: list[str] = field(default_factory=list)  # outputs its comments show
    out: str = ""
    err: str = ""
    status: int | None = None
    open: bool = True                               # a comment on the next line may still show output

    def json(self):
        return json.loads(self.out)

    def lines(self) -> list[str]:
        return self.out.splitlines()


def _split_comment(line: str) -> tuple[str, str | None]:
    """(command, comment): a `#` after whitespace and outside quotes starts a comment."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote and not (quote == '"' and line[i - 1] == "\\"):
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), None


def _output(comment: str | None) -> str | None:
    """The output a comment shows, if it shows one."""
    if comment is None:
        return None
    if comment.startswith(OUTPUT_MARK):
        return comment[len(OUTPUT_MARK):]
    if comment.startswith("{"):  # the answer of an HTTP call, as JSON
        return comment
    return None


def parse_steps(text: str) -> list[Step]:
    steps: list[Step] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        command, comment = _split_comment(lines[i])
        if not command:
            shown = _output(comment)
            if steps and steps[-1].open and shown is not None:
                steps[-1].shown.append(shown)
            elif steps:
                steps[-1].open = False
            i += 1
            continue
        parts = [command]
        while parts[-1].endswith("\\"):
            i += 1
            more, more_comment = _split_comment(lines[i])
            parts.append(more)
            comment = more_comment or comment
        step = Step("\n".join(parts))
        shown = _output(comment)
        if shown is not None:
            step.shown.append(shown)
        steps.append(step)
        i += 1
    return steps


def _wait_for(url: str) -> str:
    """A shell line that waits until a server started in the background
    answers (over HTTPS without checking its certificate: only whether it is up)."""
    code = ("import http.client, ssl, time, urllib.request\n"
            "ctx = ssl._create_unverified_context()\n"
            "for _ in range(600):\n"
            "    try:\n"
            f"        urllib.request.urlopen({url + '/healthz'!r}, timeout=1, context=ctx); break\n"
            "    except (OSError, http.client.HTTPException): time.sleep(0.05)\n"
            "else: raise SystemExit('the server did not come up')")
    return f"python -c {_shell_quote(code)}"


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def run_shell(text: str, cwd: Path, env: dict, *, timeout: float = 300) -> list[Step]:
    """Run the block's commands in order in one bash (so `export` and `&`
    carry over, as when pasted into a terminal); each step gets its own
    stdout, stderr and exit status. Background jobs are waited for at the end."""
    steps = parse_steps(text)
    script = ["set -o pipefail"]
    for i, step in enumerate(steps):
        script.append(f"printf '\\036{i}\\036'; printf '\\036{i}\\036' >&2")
        script.append(step.command)
        script.append("printf '\\037%d\\037' $?")
        if step.command.endswith("&") and " serve " in step.command:
            port = re.search(r"--port (\d+)", step.command).group(1)
            scheme = "https" if "--ssl-certfile" in step.command else "http"
            script.append(_wait_for(f"{scheme}://127.0.0.1:{port}"))
    script.append("printf '\\036end\\036'; wait")
    proc = subprocess.Popen(["bash", "-c", "\n".join(script)], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"the block did not finish in {timeout} s:\n{err.decode()[-3000:]}") from None
    outs = re.split(rb"\x1e(\d+|end)\x1e", out)
    errs = re.split(rb"\x1e(\d+|end)\x1e", err)
    by_step_out = dict(zip(outs[1::2], outs[2::2]))
    by_step_err = dict(zip(errs[1::2], errs[2::2]))
    for i, step in enumerate(steps):
        chunk = by_step_out.get(str(i).encode(), b"")
        status = re.findall(rb"\x1f(\d+)\x1f", chunk)
        assert len(status) == 1, f"step {i} ({step.command!r}) did not finish:\n{err.decode()[-3000:]}"
        step.status = int(status[0])
        step.out = re.sub(rb"\x1f\d+\x1f", b"", chunk).decode()  # a background job may write after it
        step.err = by_step_err.get(str(i).encode(), b"").decode()
    return steps


def check_steps(steps: list[Step]) -> None:
    """Every command succeeded, and printed what the README shows for it."""
    for step in steps:
        assert step.status == 0, f"{step.command!r} exited {step.status}:\n{step.err}"
        assert_shown(step.shown, step.out.splitlines() + step.err.splitlines(), step.command)


def find(steps: list[Step], text: str, *, exact: bool = False) -> Step:
    """The one step whose command contains `text` (or is `text`)."""
    hits = [s for s in steps if (s.command == text if exact else text in s.command)]
    assert len(hits) == 1, f"{len(hits)} commands contain {text!r}"
    return hits[0]


def on_port(text: str, old: int, new: int) -> str:
    """The block aimed at a server on port `new` instead of `old`."""
    return re.sub(rf"\b(localhost|127\.0\.0\.1):{old}\b", rf"\g<1>:{new}", text).replace(
        f"--port {old}", f"--port {new}")


def run_python(code: str, cwd: Path, env: dict, timeout: float = 300) -> list[str]:
    path = cwd / "readme_block.py"
    path.write_text(code)
    r = subprocess.run([sys.executable, str(path)], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=timeout, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


# ---- the sample data every block reads ----

@dataclass
class Samples:
    files: dict[str, Path]          # file name -> where the README's sample block wrote it
    raws: dict[str, list[bytes]]    # file name -> its records, as orjson reads the file


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Samples:
    """The README's sample block, run once; its files are exactly what
    shoal.sample generates for the kinds, counts and seeds it names."""
    where = tmp_path_factory.mktemp("samples")
    text = block("Quickstart (library)", "sh")
    steps = run_shell(text, where, shell_env(where))
    check_steps(steps)
    files, raws = {}, {}
    for step in steps:
        m = re.fullmatch(r"shoal sample (\w+) -n (\d+) -o (\S+)", step.command)
        assert m, f"the sample block runs only `shoal sample KIND -n N -o FILE`: {step.command!r}"
        kind, n, name = m.group(1), int(m.group(2)), m.group(3)
        data = gzip.decompress((where / name).read_bytes())
        assert data == sample.KINDS[SAMPLE_KINDS[kind][0]](n, 1), name
        lines = data.split(b"\n")
        assert lines[-1] == b"" and len(lines) == n + 1
        files[name], raws[name] = where / name, lines[:-1]
        assert all(isinstance(orjson.loads(raw), dict) for raw in raws[name])
    assert sorted(files) == ["events.ndjson.gz", "zeek.ndjson.gz"]
    return Samples(files, raws)


def shell_env(home: Path) -> dict:
    """The environment of a user who activated the venv, with no shoal settings of their own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", LC_ALL="C", HOME=str(home))
    return env


@pytest.fixture
def work(tmp_path, samples) -> Path:
    """An empty directory holding the sample files, as a user has them."""
    d = tmp_path / "work"
    d.mkdir()
    for name, path in samples.files.items():
        (d / name).symlink_to(path)
    return d


def needs(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"the README block uses {', '.join(missing)}, which is not installed")


# ---- the blocks ----

def test_sample_block_makes_the_generators_files(samples):
    assert len(samples.raws["events.ndjson.gz"]) == 20_000
    assert len(samples.raws["zeek.ndjson.gz"]) == 150_000


def test_library_quickstart(work, samples):
    code = block("Quickstart (library)", "python")
    out = run_python(code, work, shell_env(work))
    log = Log(samples.raws["events.ndjson.gz"])
    with shoal.open(work / "data") as store:
        log.bind(store)
    newest_linux = log.query("repo.name", "torvalds/linux", limit=3)
    expected = [f"{len(log)} 0 []"]
    expected += [f"{address} {orjson.loads(raw)['type']}" for address, raw in newest_linux]
    both = log.query_all([("type", "PushEvent"), ("repo.name", "torvalds/linux")])
    either = log.query_any([("type", "ForkEvent"), ("type", "WatchEvent")])
    expected.append(f"{len(both)} {len(either)}")
    expected.append(f"{len(log.query('type', 'PushEvent'))} {len(both)}")
    types = log.value_counts("type")
    top = sorted(((python_value(k), n) for k, n in types.items()), key=lambda vn: (-vn[1], vn[0]))[:3]
    expected.append(repr(top))
    expected.append(log.objs[0]["id"])
    expected.append(str(len(log.scan("payload.size > `3`"))))
    assert out == expected
    pushes = log.query("type", "PushEvent")
    assert (work / "pushes.ndjson").read_bytes() == b"".join(raw + b"\n" for _, raw in pushes)
    assert_shown(python_outputs(code), out, "quickstart")


@pytest.fixture
def server(tmp_path):
    s = ServerProcess(tmp_path / "shoal-data", module="shoal.cli")
    yield s
    s.kill()


def test_http_blocks(work, samples, server):
    """The curl walk-through, then the separate block that deletes data."""
    needs("curl")
    env = shell_env(work)
    steps = run_shell(on_port(block("HTTP API", "sh", 0), README_PORT, server.port), work, env)
    check_steps(steps)
    extra = [b'{"_path": "dns", "query": "example.com"}', b'{"a": 1}']
    log = Log(samples.raws["zeek.ndjson.gz"] + extra)
    with shoal.Client(server.url) as c:
        log.bind(c)
    zeek = len(samples.raws["zeek.ndjson.gz"])

    answer = find(steps, "@zeek.ndjson.gz").json()
    assert answer["ingested"] == zeek and answer["rejected"] == 0
    assert (answer["first_address"], answer["last_address"]) == (log.addresses[0], log.addresses[zeek - 1])
    assert find(steps, "on_error=reject").json()["ingested"] == 1
    bad = find(steps, "{oops").json()
    assert (bad["ingested"], bad["rejected"], bad["errors"][0]["line"]) == (1, 1, 2)

    def records(step: Step) -> list[bytes]:
        return [line.encode() for line in step.lines()]

    dns53 = '"id.resp_p" == `53`'
    assert records(find(steps, '"value": "rdp"')) == [raw for _, raw in log.query("_path", "rdp", limit=2)]
    assert pairs(find(steps, '"all":').out.encode()) == \
        log.query_all([("_path", "dns"), (dns53, True)], limit=2, order="oldest")
    assert records(find(steps, '"any":')) == \
        [raw for _, raw in log.query_any([("_path", "ldap_search"), ("_path", "ntp")], limit=2)]
    assert records(find(steps, "value=ssl")) == [raw for _, raw in log.query("_path", "ssl", limit=1)]
    assert pairs(find(steps, "psfs/dns53/records").out.encode()) == log.query(dns53, True, limit=1)
    assert records(find(steps, "/scan")) == [raw for _, raw in log.scan('"id.resp_p" > `60000`', limit=1)]
    assert find(steps, "/count").json() == {"count": len(log.query("_path", "dns"))}
    paths = sorted(((python_value(k), n) for k, n in log.value_counts("_path").items()), key=lambda vn: (-vn[1], vn[0]))
    assert find(steps, "/group_count").json() == {"groups": [{"value": v, "count": n} for v, n in paths[:3]]}
    assert find(steps, "/records/64").out.encode() == log.raws[0]
    listed = find(steps, f"curl -s localhost:{server.port}/psfs", exact=True).json()
    assert [p["name"] for p in listed["psfs"]] == ["path", "dns53"]
    assert find(steps, "-X DELETE").json()["name"] == "dns53"
    assert find(steps, "-X POST localhost").json()["checkpoint_id"] == 1
    assert find(steps, "/stats").json()["records"] == len(log)
    assert "shoal_" in find(steps, "/metrics").out

    # Deleting data: nothing below the newest 1 GiB; then the records below the cut.
    steps = run_shell(on_port(block("HTTP API", "sh", 1), README_PORT, server.port), work, env)
    check_steps(steps)
    keep_all, cut = steps[0].json(), steps[1].json()
    assert keep_all["records_dropped"] == 0 and keep_all["begin_after"] == log.addresses[0]
    until = json.loads(re.search(r"-d '(.*)'", steps[1].command).group(1))["until_address"]
    assert cut["begin_after"] == until, "the README's cut is a page start: nothing rounds it"
    assert cut["records_dropped"] == sum(a < until for a in log.addresses)
    with shoal.Client(server.url) as c:
        assert c.stats()["records"] == sum(a >= until for a in log.addresses)


def test_python_client_block(work, samples, server):
    code = on_port(block("Python client", "python"), README_PORT, server.port)
    out = run_python(code, work, shell_env(work))
    log = Log(samples.raws["zeek.ndjson.gz"])
    with shoal.Client(server.url) as c:
        log.bind(c)
        assert [p.name for p in c.psfs() if p.active] == ["path"]
    port = '"id.resp_p"'
    expected = [f"{len(log)} 0"]
    for address, raw in log.query("_path", "ssl", limit=3):
        rec = orjson.loads(raw)
        expected.append(f"{address} {rec['uid']} {rec['id.resp_h']}")
    expected.append(f"{len(log.query_all([('_path', 'dns'), (port, 53)]))} "
                    f"{len(log.query_any([('_path', 'ntp'), ('_path', 'rdp')]))}")
    expected.append(str([orjson.loads(raw)["id.resp_p"] for _, raw in log.scan(f"{port} > `60000`", limit=3)]))
    expected.append(log.objs[0]["_path"])
    assert out == expected
    assert_shown(python_outputs(code), out, "Python client")


def test_command_line_block(work, samples):
    needs("jq")
    store = work / "events-data"
    steps = run_shell(block("Command line", "sh", 0), work, shell_env(work))
    check_steps(steps)
    extra = sample.github_events(100, 2).split(b"\n")[:-1]
    log = Log(samples.raws["events.ndjson.gz"] + extra)
    with shoal.open(store) as s:
        log.bind(s)
    n = len(samples.raws["events.ndjson.gz"])
    assert find(steps, "shoal ingest events").err == \
        f"events.ndjson.gz: {n:,} ingested, 0 rejected, addresses 64..{log.addresses[n - 1]}\n"
    assert find(steps, "| shoal ingest -").err.startswith(f"<stdin>: {len(extra)} ingested, 0 rejected")

    def jq(records: list[tuple[int, bytes]], expression: str) -> list[str]:
        return [json.dumps(search(expression, orjson.loads(raw)), ensure_ascii=False) for _, raw in records]

    assert find(steps, "query type PushEvent").lines() == \
        jq(log.query("type", "PushEvent", limit=3), "actor.login")
    assert find(steps, "query push").lines() == \
        jq(log.query("type == 'PushEvent'", True, order="oldest", limit=1), "repo.name")
    repo = re.search(r"query repo '\"(.*?)\"'", find(steps, "query repo").command).group(1)
    assert find(steps, "query repo").lines() == [str(a) for a, _ in log.query("repo.name", repo, limit=2)]
    scanned = log.scan("payload.size > `3`", limit=3)
    assert find(steps, "shoal scan").lines() == \
        [json.dumps({"type": o["type"], "size": o["payload"]["size"]}, separators=(",", ":"))
         for o in (orjson.loads(raw) for _, raw in scanned)]
    assert find(steps, "shoal get 64").lines() == [json.dumps(log.objs[0]["type"])]
    assert find(steps, "shoal psf ls").lines()[1].split()[:4] == ["type", "0", "projection", "active"]
    assert find(steps, "shoal psf rm push").lines() == ["deregistered PSF push"]
    assert find(steps, "shoal stats").lines()[0].split() == ["records", f"{len(log):,}"]
    assert find(steps, "shoal checkpoint").lines()[0].startswith(f"checkpoint 1: {len(log):,} records")
    assert find(steps, "shoal compact").lines()[0].startswith("nothing to compact")


def test_command_line_server_block(work, samples):
    needs("jq")
    port = free_port()
    text = on_port(block("Command line", "sh", 1), CLI_SERVER_PORT, port)
    steps = run_shell(text, work, shell_env(work))
    check_steps(steps)
    zeek = [orjson.loads(raw) for raw in samples.raws["zeek.ndjson.gz"]]
    assert find(steps, "shoal ingest").err.startswith(f"zeek.ndjson.gz: {len(zeek):,} ingested, 0 rejected")
    newest_dns = [r for r in reversed(zeek) if r["_path"] == "dns"][:1000]
    names = collections.Counter("null" if r.get("query") is None else r["query"] for r in newest_dns)
    # sort -rn in the C locale: by count, ties by the whole line, both descending
    top = sorted(names.items(), key=lambda kv: (kv[1], kv[0].encode()), reverse=True)[:3]
    assert find(steps, "uniq -c").lines() == [f"{n:>7} {name}" for name, n in top]
    # `kill %1` stopped the server cleanly: its checkpoint holds every record.
    with shoal.open(work / "zeek-data") as store:
        assert store.stats()["records"] == len(zeek)
        assert store.stats()["recovery"]["checkpoint_id"] == 1


def test_keyed_store_blocks(work):
    """Self-contained: they make their own records."""
    code = block("Keyed stores: point reads, updates, deletes", "python")
    out = run_python(code, work, shell_env(work))
    assert out == ["{'id': 7, 'name': 'ada l.'}", "True None", "[]", "[{'id': 7, 'name': 'ada'}]"]
    assert_shown(python_outputs(code), out, "keyed store")

    steps = run_shell(block("Keyed stores: point reads, updates, deletes", "sh"), work, shell_env(work))
    check_steps(steps)
    written = (work / "users.ndjson").read_bytes().splitlines()
    assert find(steps, "shoal ingest").err.startswith(f"users.ndjson: {len(written)} ingested, 0 rejected")
    newest_42 = [line for line in written if orjson.loads(line)["id"] == 42][-1]
    assert find(steps, "shoal get").out.encode() == newest_42 + b"\n"
    with shoal.open(work / "users") as store:
        assert store.get_key(42) is None
        assert [r.raw for r in store.scan("`true`")] == [line for line in written if orjson.loads(line)["id"] == 7]


def test_compressed_store_block(work):
    """Self-contained: it makes its own records; the disk it shows is checked
    against the records' bytes, and the store against its input."""
    code = block("Compressed cold data", "python")
    out = run_python(code, work, shell_env(work))
    assert_shown(python_outputs(code), out, "compressed store")
    assert sorted(p.name for p in (work / "data-z" / "log").glob("segment-*.z"))  # compressed segments
    data = sample.github_events(80_000)
    with shoal.open(work / "data-z") as store:
        assert store.config.compression == "zstd"
        assert b"\n".join(r.raw for r in store.scan("`true`", order="oldest")) + b"\n" == data


def test_access_block(work, samples):
    """Tokens and TLS as the README sets them up: 401 without a token, 403
    with the read token on a write route, the CLI over HTTPS with each."""
    needs("openssl", "curl", "jq")
    text = on_port(block("Access: tokens, TLS and settings", "sh"), ACCESS_PORT, free_port())
    steps = run_shell(text, work, shell_env(work))
    check_steps(steps)
    assert [s.json()["error"] for s in steps if s.command.startswith("curl")] == ["unauthorized", "forbidden"]
    events = [orjson.loads(raw) for raw in samples.raws["events.ndjson.gz"]]
    assert find(steps, "shoal ingest").err.startswith(f"events.ndjson.gz: {len(events):,} ingested, 0 rejected")
    assert find(steps, "shoal query").out == "PushEvent\n"
    assert "WARNING" not in (work / "secure.log").read_text()  # tokens and TLS: nothing to warn about
    with shoal.open(work / "secure-data") as store:
        assert store.stats()["records"] == len(events)
        assert [p.name for p in store.psfs()] == ["type"]


def test_elasticsearch_blocks(work, server):
    """The bulk walk-through against `shoal serve`, then the Python client's
    helpers.bulk (the elasticsearch package is a test dependency)."""
    needs("curl")
    env = shell_env(work)
    (sh, curl), (py, code) = blocks("Elasticsearch clients and shippers")[:2]
    steps = run_shell(on_port(curl, README_PORT, server.port), work, env)
    check_steps(steps)
    items = find(steps, "_bulk").json()["items"]
    assert [(op, i["_index"], i["status"]) for item in items for op, i in item.items()] == \
        [("index", "logs", 201), ("create", "audit", 201)]
    assert find(steps, "/scan").out.encode() == b'{"_index":"audit","user":"ann"}\n'
    with shoal.Client(server.url) as c:
        assert c.get(int(items[0]["index"]["_id"])).raw == b'{"_index":"logs","msg":"hi"}'
    pytest.importorskip("elasticsearch", reason="the elasticsearch client is a test dependency")
    out = run_python(on_port(code, README_PORT, server.port), work, env)
    assert_shown(python_outputs(code), out, "Elasticsearch")
    with shoal.Client(server.url) as c:
        events = [orjson.loads(r.raw) for r in c.scan("_index == 'events'", order="oldest")]
        assert events == [{"_index": "events", "n": i} for i in range(1000)]
        assert c.stats()["records"] == 1002


def test_cluster_block(work, samples):
    """The cluster example (on a Ray it starts) answers as the oracle says."""
    pytest.importorskip("ray", reason="the cluster needs Ray: pip install 'shoal[cluster]' (make test does)")
    code = block("Cluster (on Ray)", "python")
    out = run_python(code, work, shell_env(work))
    log = Log(samples.raws["events.ndjson.gz"])
    types = log.value_counts("type")
    top = sorted(((python_value(k), n) for k, n in types.items()), key=lambda vn: (-vn[1], vn[0]))[:2]
    pushes = log.matching("type", "PushEvent")
    assert out == [f"{len(log)} 0", str(len(pushes)), repr(top), f"{log.objs[pushes[-1]]['id']} True",
                   "[True, True]"]
    assert_shown(python_outputs(code), out, "cluster")


def test_every_runnable_block_is_tested():
    """A new code block in these sections needs a test here."""
    tested = {"Quickstart (library)": ["sh", "python"], "HTTP API": ["sh", "sh"], "Python client": ["python"],
              "Command line": ["sh", "sh"], "Keyed stores: point reads, updates, deletes": ["python", "sh"],
              "Access: tokens, TLS and settings": ["sh", "nginx", "toml"],
              "Elasticsearch clients and shippers": ["sh", "python", "yaml", "yaml"],
              "Compressed cold data": ["python"], "Cluster (on Ray)": ["python"]}
    for heading, languages in tested.items():
        assert [lang for lang, _ in blocks(heading)] == languages, heading
    assert "shared/data" not in "".join(body for h in tested for _, body in blocks(h))
