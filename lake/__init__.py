"""The lake: EMAP's data as partitioned Parquet, written by the embedded store or by the
Spark job, and read back by the dashboard (see docs/lake.md)."""
