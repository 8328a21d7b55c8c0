"""Storage under the sinks and the leases: where an output is (`storage.location`: local
disk or GCS, the tables found there, the check before a run) and how its requests are
retried (`storage.retries`: which errors heal, the time-budgeted, counted retry).

gcsfs is imported only for a `gs://` location (it costs 1.5 s at start). It probes
buckets over gRPC unless told otherwise; the GCS emulator never answers, so every call
would wait 60 s. The setting must be made before gcsfs is imported, so it is made here,
before anything of ours can import it (a real bucket is unaffected).
"""

import os

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
