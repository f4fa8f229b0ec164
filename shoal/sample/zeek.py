"""zeek_logs: Zeek-network-monitor-like logs, shaped like the WRCCDC 2018 stream.

Records come in seeded blocks of _BLOCK records (block k drawn from the
generator seeded [seed, 3, k]), and record i's _write_ts lies in its own slot
[i * _GAP_US, (i + 1) * _GAP_US) after the start: so _write_ts ascends, and
logs(k, seed) is the first k records of logs(n, seed) for any k < n.
"""
from __future__ import annotations

import functools
import time

import numpy as np
import orjson

from .github import _WORDS, _hex

_BASE_US = 1521911720 * 10**6  # 2018-03-24T17:15:20Z, the first second of the capture
_GAP_US = 12_000  # mean gap between records (~83 a second); each record has its own slot
_BLOCK = 1024  # records per seeded block: a shorter stream is a prefix of a longer one
_QUERY_ZIPF, _MAX_QUERIES = 1.5, 4000
_SAME_CONNECTION = 0.5
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B62_CHARS = np.array(list(_B62))
_NAMES = ["ise.wrccdc.org", "*", "videosearch.ubuntu.com", "arena1.wrccdc.cpp.edu", "docs.google.com",
          "snozberry.oompa.loompa", "store.oompa.loompa", "sweettarts.oompa.loompa", "detectportal.firefox.com",
          "titan.oompa.loompa", "daisy.ubuntu.com", "www.google.com", "wpad.jerry.land", "forums.jerry.land",
          "_ldap._tcp.dc._msdcs.factory.oompa.loompa", "time.windows.com", "ocsp.digicert.com",
          "xn--bcher-kva.example", "safebrowsing.googleapis.com", "1.0.0.10.in-addr.arpa"]
_HOSTS = "www mail pc-helen pc-jerry ftp vpn db wiki dc01 files printer cam git".split()
_DOMAINS = "jerry.land oompa.loompa factory.oompa.loompa wrccdc.org cpp.edu example.com".split()
_QTYPES = [("A", 1)] * 13 + [("AAAA", 28)] * 5 + [("PTR", 12), ("SRV", 33)]
_TLS = ["TLSv12"] * 6 + ["TLSv10", "TLSv13"]
_CIPHERS = ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
            "TLS_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_128_CBC_SHA"]
_VALIDATION = ["ok", "unable to get local issuer certificate", "self signed certificate in certificate chain"]
_WEIRD = ["TCP_ack_underflow_or_misorder", "bad_TCP_checksum", "data_before_established", "possible_split_routing",
          "above_hole_data_without_any_acks", "inappropriate_FIN", "truncated_tcp_payload", "dns_unmatched_reply"]
_FAILURES = ["Binpac exception: binpac exception: string mismatch at rdp-protocol.pac:81: \nexpected pattern: "
             "\"Cookie: mstshash\\=\"\nactual data: \"\\x01\"", "not a http request line",
             "Invalid version late in TLS connection. Packet reported version: 0", "unexpected end of data"]
_SUBJECT = ("unstructuredName=1315656901\\,564d7761726520496e632e,CN=localhost.localdomain,O=VMware\\, Inc,"
            "L=Palo Alto,ST=California,C=US")


def _b62(x: int, width: int) -> str:
    chars = []
    for _ in range(width):
        x, d = divmod(x, 62)
        chars.append(_B62[d])
    return "".join(chars)


@functools.lru_cache(maxsize=4096)
def _iso_second(s: int) -> str:
    t = time.gmtime(s)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


def _iso(us: int) -> str:
    s, frac = divmod(us, 10**6)
    return f"{_iso_second(s)}.{frac:06d}Z"


def _host(k: int) -> str:
    """Internal host k: a handful of subnets, as in a competition network."""
    return f"10.{(47, 47, 47, 128, 164, 224, 0)[k % 7]}.{(k * 37) % 29}.{(k * 101) % 250 + 1}"


_SERVERS = {53: ["10.0.0.100", "10.47.26.25", "10.10.6.1", "8.8.8.8"],
              443: ["10.47.8.208", "134.71.3.16", "10.47.21.80", "172.217.5.110", "10.47.3.200"]}


def _server(port: int, u: float) -> str:
    """A responder for `port`, skewed: the first of its pool answers most."""
    pool = _SERVERS.get(port)
    k = int(u ** 4 * 40)
    return pool[k] if pool and k < len(pool) else _host(port * 7 + k)


def _query(rank: int) -> str:
    if rank < len(_NAMES):
        return _NAMES[rank]
    k = rank - len(_NAMES)
    return f"{_HOSTS[k % len(_HOSTS)]}{k // len(_HOSTS)}.{_DOMAINS[(k * 7) % len(_DOMAINS)]}"


def _dns(r: list, u: list, rank: int) -> dict:
    """The fields of a dns record asking for the name of popularity `rank`:
    unanswered (no rtt, rcode, answers), refused (NXDOMAIN, most for a few
    names) or answered (answers of the type asked, with TTLs)."""
    rec = {}
    name = _query(rank)
    nbstat = name == "*"
    rec["proto"] = "tcp" if r[3] % 50 == 0 else "udp"
    rec["trans_id"] = r[3] % 65536
    v = r[4] % 100
    replied = v >= 18
    if replied:
        rec["rtt"] = u[2] * u[2] * 0.02
    if r[2] % 1000 > 1:
        rec["query"] = name
    elif r[2] % 1000 == 1:
        rec["query"] = None
    qtype = ("NBSTAT", 32) if nbstat else _QTYPES[r[5] % len(_QTYPES)]
    rec.update(qclass=1, qclass_name="C_INTERNET", qtype=qtype[1], qtype_name=qtype[0])
    nx_per_mille = 500 if rank == 2 else 400 if rank % 6 == 5 else 30
    rcode = 3 if r[6] % 1000 < nx_per_mille else 2 if r[6] % 1000 == 999 else 0
    if replied:
        rec.update(rcode=rcode, rcode_name=("NOERROR", "", "SERVFAIL", "NXDOMAIN")[rcode])
    rec.update(AA=r[7] % 10 == 0, TC=False, RD=r[7] % 10 != 1, RA=replied and r[7] % 10 != 2, Z=0)
    if replied and rcode == 0 and v >= 26:
        count = 1 + (r[1] >> 8) % 3
        if qtype[0] == "PTR":
            answers = [f"{_HOSTS[(r[1] + j) % len(_HOSTS)]}.{_DOMAINS[j % 3]}" for j in range(count)]
        elif qtype[0] == "AAAA":
            answers = [f"2001:db8::{(r[1] >> j) % 65536:x}" for j in range(count)]
        else:
            answers = [_server(443, ((r[1] >> (4 * j)) % 1000) / 1000) for j in range(count)]
        if r[5] % 3 == 0:
            answers.insert(0, f"{name.split('.')[0]}.cdn.{_DOMAINS[r[5] % len(_DOMAINS)]}")
        rec["answers"] = answers
        rec["TTLs"] = [float((r[0] >> (3 * j)) % 86400) for j in range(len(answers))]
    rec["rejected"] = replied and rcode != 0 and r[7] % 2 == 0
    return rec


def _ssl(r: list, u: list) -> dict:
    """A handshake seen in part (55%), with a server_name (about a third), or
    with the certificate chain."""
    rec = {}
    v = r[3] % 100
    if v >= 55:
        rec.update(version=_TLS[r[4] % len(_TLS)], cipher=_CIPHERS[r[4] % len(_CIPHERS)])
        if v >= 95:
            rec["curve"] = ("secp256r1", "x25519")[r[5] % 2]
        if v < 80 or v >= 95:
            rec["server_name"] = _query(int(u[2] ** 3 * 40) + (r[5] % 2))
    rec.update(resumed=r[6] % 3 == 0, established=r[6] % 7 != 0,
               ssl_history=("CsiI", "CsxknGIi", "Cs", "CsxkniGIi")[r[6] % 4])
    if v >= 80:
        rec.update(cert_chain_fps=[_hex(r[7] + j, 64) for j in range(1 + r[7] % 2)], client_cert_chain_fps=[],
                   validation_status=_VALIDATION[r[5] % len(_VALIDATION)])
    return rec


def _analyzer(r: list, u: list) -> dict:
    return {"cause": "violation", "analyzer_kind": "protocol",
            "analyzer_name": ("RDP", "SSL", "HTTP", "SMTP", "DNS")[r[3] % 5],
            "failure_reason": _FAILURES[r[4] % len(_FAILURES)]}


# _path: (records per 100,000, responder ports or None for a kind that is no
# connection, longest delay of ts before _write_ts in µs, fields(r, u): the
# kind's own fields from 8 random ints below 2**31 and floats in [0, 1)).
# The weights are those of the WRCCDC 2018 logs; a port drawn as 0 is a scan's.
_KINDS = {
    "dns": (33800, (53, 53, 53, 5353), 1_000, None),  # fields: _dns, which takes the name's rank too
    "ssl": (31200, (443, 443, 443, 8443, 993, 3389), 10_000, _ssl),
    "weird": (15300, (80, 443, 445, 3389, 22, 8080, 0), 0, lambda r, u: {
        "name": _WEIRD[r[3] % len(_WEIRD)], "notice": False, "peer": "zeek", "source": "TCP"}),
    "analyzer": (10400, (3389, 443, 80, 25, 0), 0, _analyzer),
    "rdp": (2600, (3389,), 200_000, lambda r, u: {
        "result": ("encrypted", "Success")[r[3] % 2], "security_protocol": ("HYBRID", "RDP", "SSL")[r[4] % 3],
        "cert_count": r[5] % 3}),
    "syslog": (1500, (514,), 0, lambda r, u: {
        "proto": "udp", "facility": ("LOCAL0", "DAEMON", "AUTH")[r[3] % 3],
        "severity": ("INFO", "NOTICE", "ERR")[r[4] % 3],
        "message": f"1 2018-03-24T08:59:37-07:00 PC-helen.jerry.land EvntSLog - - - @cee: {{\"id\": "
                   f"\"{r[5] % 8000}\", \"msg\": \"The service entered the \\\"stopped\\\" state.\", "
                   f"\"user\": \"N\\\\A\"}}"}),
    "known_services": (1000, None, 0, lambda r, u: {
        "host": _host(r[3] % 60), "port_num": (80, 443, 22, 3389, 445)[r[4] % 5], "port_proto": "tcp",
        "service": [("HTTP", "SSL", "SSH", "RDP", "SMB")[r[4] % 5]]}),
    "ocsp": (830, None, 0, lambda r, u: {
        "id": "F" + _b62(r[3] * r[4], 17), "hashAlgorithm": "sha1", "issuerNameHash": _hex(r[5]).upper(),
        "issuerKeyHash": _hex(r[6]).upper(), "serialNumber": _hex(r[7], 32).upper(),
        "certStatus": "good" if r[3] % 50 else "revoked", "thisUpdate": "2018-03-24T11:46:33.000000Z",
        "nextUpdate": "2018-03-31T11:01:33.000000Z"}),
    "smtp": (750, (25, 587, 587), 5_000_000, lambda r, u: {
        "trans_depth": 1 + r[3] % 2, "helo": _host(r[4] % 60), "last_reply": "220 2.0.0 SMTP server ready",
        "path": [_host(r[5] % 60), _host(r[4] % 60)], "tls": r[6] % 3 != 0, "fuids": [], "is_webmail": False}),
    "ntp": (570, (123,), 0, lambda r, u: {
        "version": 3 + r[3] % 2, "mode": 3 + r[4] % 2, "stratum": r[5] % 4, "poll": float(1 << (r[5] % 7)),
        "precision": u[2] * 1e-6, "root_delay": 0.0, "root_disp": u[2] / 8, "ref_id": "\\x00\\x00\\x00\\x00",
        "ref_time": "1970-01-01T00:00:00.000000Z", "xmt_time": "2018-03-24T17:15:13.139938Z", "num_exts": 0}),
    "loaded_scripts": (320, None, 0, lambda r, u: {
        "name": f"/opt/zeek/share/zeek/base/{_WORDS[r[3] % len(_WORDS)]}/{_WORDS[r[4] % len(_WORDS)]}.zeek"}),
    "ntlm": (270, (445,), 10_000, lambda r, u: {
        "server_nb_computer_name": "SNOZBERRY", "server_dns_computer_name": "Snozberry.factory.oompa.loompa",
        "server_tree_name": "factory.oompa.loompa", "success": r[3] % 4 != 0}),
    "smb_mapping": (250, (445,), 1_000, lambda r, u: {
        "path": f"\\\\{_host(r[3] % 60)}\\{('ADMIN$', 'IPC$', 'C$')[r[4] % 3]}",
        "share_type": ("DISK", "PIPE")[r[4] % 2]}),
    "software": (240, None, 0, lambda r, u: {
        "host": _host(r[3] % 60), "software_type": "HTTP::BROWSER", "name": "MSIE", "version.major": 6 + r[4] % 6,
        "version.minor": 0, "unparsed_version": "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.1)"}),
    "x509": (220, None, 0, lambda r, u: {
        "fingerprint": _hex(r[3], 64), "certificate.version": 3, "certificate.serial": _hex(r[4], 12).upper(),
        "certificate.subject": _SUBJECT, "certificate.issuer": "O=VMware Installer",
        "certificate.not_valid_before": "2011-09-10T12:15:02.000000Z",
        "certificate.not_valid_after": "2023-03-11T12:15:02.000000Z", "certificate.key_length": 2048}),
    "modbus": (170, (502,), 0, lambda r, u: {
        "tid": r[3] % 65536, "unit": r[4] % 256, "func": ("READ_COILS", "unknown-100")[r[5] % 2],
        "pdu_type": ("REQ", "RESP")[r[6] % 2]}),
    "known_hosts": (160, None, 0, lambda r, u: {"host": _host(r[3] % 400)}),
    "notice": (130, (443, 22, 3389), 0, lambda r, u: {
        "proto": "tcp", "note": ("SSL::Invalid_Server_Cert", "Scan::Port_Scan")[r[3] % 2],
        "msg": "SSL certificate validation failed with (unable to get local issuer certificate)",
        "sub": _SUBJECT, "actions": ["Notice::ACTION_LOG"], "email_dest": [], "suppress_for": 3600.0}),
    "ftp": (60, (21,), 1_000_000, lambda r, u: {
        "user": "anonymous", "password": "nessus@nessus.org", "command": ("PASV", "USER", "RETR")[r[3] % 3],
        "reply_code": 227, "reply_msg": "Entering Passive Mode (172,20,0,80,200,63).",
        "data_channel.passive": True, "data_channel.resp_p": 1024 + r[4] % 60000}),
    "dce_rpc": (50, (135, 1030), 1_000, lambda r, u: {
        "rtt": u[2] / 1000, "named_pipe": "1030", "endpoint": "samr", "operation": "SamrConnect2"}),
    "dpd": (50, (80, 8080, 0), 0, lambda r, u: {
        "proto": "tcp", "analyzer": "HTTP", "failure_reason": "not a http request line"}),
    "snmp": (41, (161,), 60_000_000, lambda r, u: {
        "duration": u[2] / 100, "version": ("1", "2c")[r[3] % 2], "community": "internal",
        "get_requests": r[4] % 5, "get_bulk_requests": 0, "get_responses": r[4] % 5, "set_requests": 0}),
    "known_certs": (22, None, 0, lambda r, u: {
        "host": _host(r[3] % 60), "port_num": 443, "subject": _SUBJECT, "issuer_subject": "O=VMware Installer",
        "serial": _hex(r[4], 12).upper()}),
    "ssh": (14, (22,), 1_000_000, lambda r, u: {
        "version": 2, "auth_success": r[3] % 2 == 0, "auth_attempts": 1 + r[4] % 3, "client": "SSH-2.0-OpenSSH_7.6",
        "server": "SSH-2.0-OpenSSH_7.4p1 Raspbian-10+deb9u3", "cipher_alg": "chacha20-poly1305@openssh.com"}),
    "pe": (13, None, 100_000, lambda r, u: {
        "id": "F" + _b62(r[3] * r[4], 17), "machine": "I386", "compile_ts": "2010-07-12T21:46:18.000000Z",
        "os": "Windows 95 or NT 4.0", "is_exe": True, "is_64bit": r[5] % 2 == 0, "uses_aslr": False,
        "section_names": [".text", ".data", ".rdata", ".bss", ".idata"][:2 + r[6] % 4]}),
    "smb_files": (8, (445,), 1_000, lambda r, u: {"action": "SMB::FILE_OPEN", "name": "\\svcctl", "size": 0}),
    "kerberos": (7, (88,), 5_000_000, lambda r, u: {
        "request_type": ("AS", "TGS")[r[3] % 2], "client": "/NM", "service": "krbtgt/NM",
        "till": "1970-01-01T00:00:00.000000Z", "forwardable": True, "renewable": r[4] % 2 == 0}),
    "stats": (4, None, 0, lambda r, u: {
        "peer": "zeek", "mem": 110 + r[3] % 50, "pkts_proc": r[4], "bytes_recv": r[5], "events_proc": r[6] % 10**6,
        "active_tcp_conns": r[7] % 500}),
    "capture_loss": (3, None, 0, lambda r, u: {
        "ts_delta": 60.0, "peer": "zeek", "gaps": r[3] % 1000, "acks": r[4] % 200000, "percent_lost": u[2]}),
    "rfb": (3, (5900,), 5_000_000, lambda r, u: {
        "client_major_version": "003", "client_minor_version": "008", "server_major_version": "003",
        "server_minor_version": "008", "authentication_method": "None"}),
    "packet_filter": (2, None, 0, lambda r, u: {
        "node": "zeek", "filter": "ip or not ip", "init": True, "success": True}),
    "ldap_search": (2, (389,), 2_000, lambda r, u: {
        "message_id": r[3] % 100, "scope": "base", "deref_aliases": "never", "result_count": 1,
        "result": "success", "filter": "(objectClass=*)"}),
}
_PATHS = list(_KINDS)
_P = np.array([k[0] for k in _KINDS.values()], dtype=float)
_P /= _P.sum()


def _block(seed: int, block: int, m: int, first: int) -> list[bytes]:
    rng = np.random.default_rng([seed, 3, block])
    kinds = rng.choice(len(_PATHS), size=_BLOCK, p=_P).tolist()
    ints = rng.integers(0, 1 << 31, size=(_BLOCK, 8)).tolist()
    unit = rng.random((_BLOCK, 4)).tolist()
    ranks = ((rng.zipf(_QUERY_ZIPF, size=_BLOCK) - 1) % _MAX_QUERIES).tolist()
    jitter = rng.integers(0, _GAP_US, size=_BLOCK).tolist()
    uids = _B62_CHARS[rng.integers(0, 62, size=(_BLOCK, 17))].view("<U17")[:, 0].tolist()
    recent: dict[str, dict] = {}  # _path -> the connection of its latest record in this block
    out = []
    for j in range(m):
        path = _PATHS[kinds[j]]
        _, ports, delay_us, fields = _KINDS[path]
        r, u = ints[j], unit[j]
        write_us = _BASE_US + (first + j) * _GAP_US + jitter[j]
        rec = {"_path": path, "_write_ts": _iso(write_us),
               "ts": _iso(write_us - (r[7] % delay_us if delay_us else 0))}
        if ports is not None:
            # Half the records of a kind go on logging the connection of the
            # kind's record before (the same uid and addresses), so a uid has
            # ~2 records on average, as in the real logs.
            conn = recent.get(path) if u[3] < _SAME_CONNECTION else None
            if conn is None:
                port = ports[r[2] % len(ports)]
                if port == 0:  # a scan: common service ports, and now and then an ephemeral one
                    port = (22, 80, 443, 8080, 3389)[r[3] % 5] if r[3] % 8 else 1024 + r[4] % 64512
                conn = recent[path] = {"uid": "C" + uids[j], "id.orig_h": _host(int(u[0] ** 3 * 400)),
                                       "id.orig_p": 1024 + r[6] % 64512, "id.resp_h": _server(port, u[1]),
                                       "id.resp_p": port}
            rec.update(conn)
        rec.update(_dns(r, u, ranks[j]) if fields is None else fields(r, u))
        out.append(orjson.dumps(rec))
    return out


def logs(n: int, seed: int = 1) -> bytes:
    """n Zeek-like log records as NDJSON bytes, oldest first (`_write_ts` ascends)."""
    out = []
    for block, first in enumerate(range(0, n, _BLOCK)):
        out += _block(seed, block, min(_BLOCK, n - first), first)
    out.append(b"")
    return b"\n".join(out)
