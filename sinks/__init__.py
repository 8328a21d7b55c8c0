"""Where results go: hive-partitioned Parquet or Delta Lake tables (local disk or GCS),
and Kafka topics; each exactly once across crashes.

gcsfs probes buckets over gRPC unless told otherwise; the GCS emulator never answers,
so every call would wait 60 s. The setting must be made before gcsfs is imported, so
it is made here, before any sink module imports it (a real bucket is unaffected).
"""

import os

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
