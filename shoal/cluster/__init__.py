"""shoal's cluster: one store's API over shards that are Ray actors, each
owning a shoal store (front.py); for streams that outgrow one machine.
Needs Ray: pip install 'shoal[cluster]'.

    import shoal.cluster
    with shoal.cluster.open("data/", shards=4) as c:
        c.register_psf("type", "type")
        c.ingest(b'{"type":"push"}\\n')
        c.count("type", "push")

Modules: front (the Cluster), shard (what each actor runs), routing (input
cut into pieces per shard), ingest (pieces sent and acknowledged), reads,
counts and keys (the Store methods, asked of the shards that can answer),
shardmap (virtual shards -> shards, persisted), marks (each shard's
sequence marks), addresses (cluster addresses and order), merge (answers
merged across shards), mover and pause (growing a cluster). Ray is
imported only when a cluster is opened.
"""
from .front import Cluster, open

__all__ = ["Cluster", "open"]
