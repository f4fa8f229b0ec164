"""jenkins_jobs: `{name, url, color}` jobs as a Jenkins API lists them."""
from __future__ import annotations

import numpy as np
import orjson

_PROJECTS = ["Abdera", "Accumulo", "ActiveMQ", "Ambari", "Ant", "Aries", "Avro", "Bigtop", "Camel", "Cassandra",
             "Commons-Lang", "CouchDB", "Cayenne", "CXF", "Derby", "Felix", "Flume", "Giraph", "Hadoop", "HBase",
             "Hive", "HttpComponents", "Jackrabbit", "James", "Kafka", "Karaf", "Lucene-Solr", "Mahout", "Maven",
             "MyFaces", "Nutch", "OpenJPA", "Oozie", "Pig", "POI", "Qpid", "Shiro", "Sling", "Sqoop", "Struts",
             "Tika", "Tomcat", "Wicket", "ZooKeeper", "hadoop-common", "hadoop-hdfs", "beam", "flink"]
_SUFFIXES = ["-trunk", "-1.x", "-2.x", "-nightly", "-PreCommit", "-Maven", "-site", "-branch-0.94", "-snapshot",
             "_tests"]
# As in the Apache builds answer: most jobs pass (blue), a fifth fail (red).
_COLORS = [("blue", 481), ("red", 184), ("disabled", 110), ("yellow", 44), ("aborted", 38), ("red_anime", 7),
           ("grey", 5), ("blue_anime", 3), ("aborted_anime", 2), ("yellow_anime", 1)]


def _name(i: int) -> str:
    """Job i's name, unique per i."""
    per_round = len(_PROJECTS) * len(_SUFFIXES)
    name = _PROJECTS[i % len(_PROJECTS)] + _SUFFIXES[(i // len(_PROJECTS)) % len(_SUFFIXES)]
    return name + (f"-{i // per_round + 1}" if i >= per_round else "")


def jobs(n: int, seed: int = 1) -> bytes:
    """n jobs as NDJSON bytes."""
    p = np.array([w for _, w in _COLORS], dtype=float)
    colors = np.random.default_rng([seed, 4]).choice(len(_COLORS), size=n, p=p / p.sum()).tolist()
    out = [orjson.dumps({"name": (name := _name(i)), "url": f"https://builds.apache.org/job/{name}/",
                         "color": _COLORS[colors[i]][0]}) for i in range(n)]
    out.append(b"")
    return b"\n".join(out)
