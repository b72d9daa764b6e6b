"""The seed notes' PySpark job: Structured Streaming reads a topic from
Kraftwerk with Spark's own Kafka source (spark-sql-kafka-0-10 from Maven
Central, exactly the pinned pyspark's version) and writes what it read to
a local sink; every record must arrive."""

import functools
import json
import os
import shutil
import subprocess

import pytest

from conftest import ROOT

SPARK_DIR = ROOT / "tests" / "spark"
# The jars Spark's Kafka source needs beyond those pyspark ships.
CONNECTOR_JARS = "spark-sql-kafka-0-10_2.13,spark-token-provider-kafka-0-10_2.13,kafka-clients,commons-pool2"


@functools.lru_cache(maxsize=None)
def connector_jars():
    if not shutil.which("java") or not shutil.which("mvn"):
        return False, "java or mvn is not installed"
    out_dir = SPARK_DIR / "target" / "jars"
    out = subprocess.run(["mvn", "-B", "-q", "dependency:copy-dependencies", f"-DincludeArtifactIds={CONNECTOR_JARS}",
                          f"-DoutputDirectory={out_dir}"], cwd=SPARK_DIR, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        return False, "resolving spark-sql-kafka-0-10 from Maven Central failed: " + (out.stdout + out.stderr)[-600:]
    jars = sorted(str(p) for p in out_dir.glob("*.jar"))
    if len(jars) != len(CONNECTOR_JARS.split(",")):
        return None, f"expected the connector's jars in {out_dir}, found {jars}"
    return True, ",".join(jars)


def require_spark():
    pyspark = pytest.importorskip("pyspark", reason="pyspark is not installed (tests/python/requirements.txt)")
    ok, jars = connector_jars()
    if ok is False:
        pytest.skip(jars)
    assert ok, jars
    pom_version = (SPARK_DIR / "pom.xml").read_text().split("<spark.version>")[1].split("<")[0]
    assert pyspark.__version__ == pom_version, f"pyspark {pyspark.__version__} but the connector is {pom_version}"
    return jars


def produce(bootstrap, replication_factor):
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic("meu-topico", num_partitions=3, replication_factor=replication_factor,
                                  topic_configs={"min.insync.replicas": str(min(2, replication_factor))})])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all",
                             value_serializer=lambda v: json.dumps(v).encode())
    sent = {}
    for i in range(1000):
        key = f"k{i}"
        value = {"chave": f"valor-{i}", "timestamp": f"2026-12-02T10:{i % 60:02d}:00"}
        producer.send("meu-topico", key=key.encode(), value=value)
        sent[key] = value
    producer.flush()
    producer.close()
    return sent


def run_seed_job(jars, bootstrap, tmp_path):
    """The seed notes' job, with a local parquet sink instead of Delta on
    S3 and a trigger that stops once everything available is read; returns
    the rows the sink holds afterwards."""
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import col, from_json
    from pyspark.sql.types import StructField, StructType, StringType

    os.environ.setdefault("PYSPARK_PYTHON", shutil.which("python3") or "python3")
    spark = (SparkSession.builder
             .appName("KafkaStreaming")
             .master("local[2]")
             .config("spark.jars", jars)
             .config("spark.ui.enabled", "false")
             .config("spark.sql.shuffle.partitions", "2")
             .config("spark.sql.streaming.checkpointLocation", str(tmp_path / "checkpoints"))
             .getOrCreate())
    try:
        schema = StructType([
            StructField("chave", StringType(), True),
            StructField("timestamp", StringType(), True),
        ])
        df = (spark.readStream
              .format("kafka")
              .option("kafka.bootstrap.servers", bootstrap)
              .option("subscribe", "meu-topico")
              .option("startingOffsets", "earliest")
              .load())
        parsed_df = (df.selectExpr("CAST(key AS STRING)", "CAST(value AS STRING)")
                     .select(col("key"), from_json(col("value"), schema).alias("data")))
        sink = tmp_path / "bronze" / "meu-topico"
        query = (parsed_df.writeStream
                 .outputMode("append")
                 .format("parquet")
                 .option("checkpointLocation", str(tmp_path / "checkpoints" / "kafka_bronze"))
                 .trigger(availableNow=True)
                 .start(str(sink)))
        query.awaitTermination(300)
        assert not query.isActive, "the streaming query did not finish within 300 s"
        assert query.exception() is None, query.exception()
        rows = spark.read.parquet(str(sink)).select("key", "data.chave", "data.timestamp").collect()
    finally:
        spark.stop()
    return rows


def check_every_record_arrived(rows, sent):
    got = {r["key"]: {"chave": r["chave"], "timestamp": r["timestamp"]} for r in rows}
    assert len(rows) == len(sent), f"{len(rows)} rows for {len(sent)} records"
    assert got == sent


def test_seed_pyspark_structured_streaming_job_reads_every_record(broker, tmp_path):
    jars = require_spark()
    sent = produce(broker.bootstrap, 1)
    check_every_record_arrived(run_seed_job(jars, broker.bootstrap, tmp_path), sent)


def test_seed_pyspark_job_reads_every_record_after_a_leader_kill(tmp_path):
    """Three nodes, replication factor 3: the leader of partition 0 is
    killed after the records were acknowledged and before the job reads."""
    jars = require_spark()
    from cluster_harness import running_cluster

    with running_cluster("kraftwerk-spark-", extra={"broker.session.timeout.ms": 4000,
                                                   "broker.heartbeat.interval.ms": 1000}) as cluster:
        sent = produce(cluster.bootstrap, 3)
        victim = cluster.describe("meu-topico")["partitions"][0]["leader"]
        cluster.kill(victim)
        cluster.wait_until(lambda: cluster.describe("meu-topico", bootstrap=cluster.bootstrap_without(victim))
                           ["partitions"][0]["leader"] not in (victim, -1), 30, "a new leader for partition 0")
        check_every_record_arrived(run_seed_job(jars, cluster.bootstrap, tmp_path), sent)
