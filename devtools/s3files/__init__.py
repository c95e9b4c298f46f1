"""A read-only S3 endpoint serving a local folder, fast enough that a benchmark measures its client.

``devtools.s3server`` is a real S3 (moto's) that records every request, but each GET costs moto
~17 ms of CPU under one GIL, in the benchmark's own process: against a few evaluator processes
the endpoint, not the evaluator, is what gets measured. This endpoint answers the requests the
reader makes (``evaluator.trial.s3``: ListObjectsV2 with StartAfter and continuation tokens,
GetObject whole or by range, HeadObject, HeadBucket) from a folder whose subfolders are the
buckets: the file ``ROOT/BUCKET/KEY`` is the object ``s3://BUCKET/KEY``.

- :meth:`StaticS3Server.start` indexes every bucket once (sorted keys, sizes, times): the folder
  is a snapshot, files added later are not served and an object is served at its indexed size.
- A GET is one ``pread`` and one write of the headers and body together (a ``sendfile`` after
  the headers over 1 MiB); connections are kept alive (HTTP/1.1), as botocore keeps them.
- ``latency`` seconds are slept before each response: the wait of a real S3's first byte, which
  costs a client time but the endpoint no CPU.
- ``processes`` > 1 serves from that many worker processes accepting on one listening socket, so
  that no single GIL bounds the endpoint.

Signatures are not checked (any credentials do), but each request is counted by the access key
it was signed with and by kind (LIST, GET, HEAD), as ``CountingS3Server`` counts them: both have
``start()``, ``stop()``, ``endpoint``, ``counts(client)`` and ``clear()``. Only path-style
addressing (what botocore uses for an ``http://127.0.0.1:PORT`` endpoint); no writes, no
``delimiter``, no ListObjects v1 (all 501 NotImplemented).

Nothing outside the folder is served: a key is looked up in the index and never joined to a
path, and keys with a ``..``, ``.`` or empty segment or a NUL are refused (400). Symbolic links
inside the folder are followed (a trial can be linked in rather than copied): they are the
operator's, not a client's.

    python -m devtools.s3files ROOT --port 0 --latency 0.02 --processes 2
"""

from devtools.s3files.server import StaticS3Server

__all__ = ["StaticS3Server"]
