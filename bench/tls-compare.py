#!/usr/bin/env python3
"""Produce and consume throughput over PLAINTEXT, SSL and SASL_SSL
(SCRAM-SHA-512), on one Kraftwerk node.

Makes a CA and a server certificate with `openssl`, starts one node
($KRAFTWERK_BIN, else target/release/kraftwerk, else target/debug) with
three listeners, creates the SCRAM user, then runs `kraftwerk bench produce`
and `kraftwerk bench consume` (1 KiB records, acks=1, linger.ms=5,
batch.size=131072, one partition) over each listener in alternation for
ROUNDS rounds. Prints a markdown table of medians: records/s, MB/s and
the broker's CPU seconds per run (utime + stime from /proc), and its peak
RSS at the end.

Usage: bench/tls-compare.py [ROUNDS] [RECORDS] (default 3, 500000).
"""

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import cpu_seconds, free_port, kraftwerk_binary, peak_rss_mib, wait_port

PROTOCOLS = ["PLAINTEXT", "SSL", "SASL_SSL"]


def openssl(*args, cwd):
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def make_certs(d):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=bench CA", cwd=d)
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost", cwd=d)
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "7",
            "-days", "2", "-extfile", "ext", "-out", "server.crt", cwd=d)
    (d / "server.pem").write_text((d / "server.key").read_text() + (d / "server.crt").read_text())


def client_properties(d, protocol):
    path = d / f"{protocol}.properties"
    lines = [f"security.protocol={protocol}"]
    if "SSL" in protocol:
        lines += ["ssl.truststore.type=PEM", f"ssl.truststore.location={d / 'ca.pem'}"]
    if protocol.startswith("SASL"):
        lines += ["sasl.mechanism=SCRAM-SHA-512",
                  'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required '
                  'username="bench" password="bench-secret";']
    path.write_text("\n".join(lines) + "\n")
    return path


def bench(kraftwerk, mode, bootstrap, props, topic, records):
    args = [kraftwerk, "bench", mode, "--bootstrap-server", bootstrap, "--command-config", str(props),
            "--topic", topic, "--num-records", str(records), "--output", "json"]
    if mode == "produce":
        args += ["--record-size", "1024", "--throughput", "-1",
                 "--producer-props", "acks=1", "linger.ms=5", "batch.size=131072"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    records = int(sys.argv[2]) if len(sys.argv) > 2 else 500_000
    kraftwerk = kraftwerk_binary()
    with tempfile.TemporaryDirectory(prefix="kraftwerk-tls-bench-") as tmp:
        d = Path(tmp)
        make_certs(d)
        ports = {p: free_port() for p in PROTOCOLS}
        log = open(d / "broker.log", "wb")
        broker = subprocess.Popen(
            [kraftwerk, "server", "--data-dir", str(d / "data"),
             "--listeners", ",".join(f"{p}://127.0.0.1:{port}" for p, port in ports.items()),
             "--override", f"ssl.keystore.location={d / 'server.pem'}",
             "--override", "sasl.enabled.mechanisms=SCRAM-SHA-512",
             "--override", "kraftwerk.http.listener="],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            for port in ports.values():
                wait_port(port, broker)
            plain = f"127.0.0.1:{ports['PLAINTEXT']}"
            subprocess.run([kraftwerk, "users", "set", "--bootstrap-server", plain, "--user", "bench",
                            "--mechanism", "SCRAM-SHA-512", "--password", "bench-secret"], check=True,
                           capture_output=True)
            results = {(p, m): [] for p in PROTOCOLS for m in ("produce", "consume")}
            for r in range(rounds):
                for protocol in PROTOCOLS:
                    props = client_properties(d, protocol)
                    bootstrap = f"127.0.0.1:{ports[protocol]}"
                    topic = f"bench-{protocol.lower()}-{r}"
                    for mode in ("produce", "consume"):
                        before = cpu_seconds(broker.pid)
                        report = bench(kraftwerk, mode, bootstrap, props, topic, records)
                        cpu = cpu_seconds(broker.pid) - before
                        results[(protocol, mode)].append((report["records_per_sec"], report["mb_per_sec"], cpu))
                        print(f"round {r + 1} {protocol:<10} {mode:<8} {report['records_per_sec']:>10.0f} rec/s "
                              f"{report['mb_per_sec']:>7.1f} MB/s broker CPU {cpu:.2f} s", file=sys.stderr)
            rss = peak_rss_mib(broker.pid)
        finally:
            broker.terminate()
            broker.wait(timeout=60)
    print(f"\n{records:,} records of 1 KiB per run, medians of {rounds} rounds; "
          f"broker peak RSS {rss:.0f} MiB ({Path(kraftwerk).parent.name} build)\n")
    print("| listener | mode | records/s | MB/s | broker CPU s | vs PLAINTEXT |")
    print("|---|---|---|---|---|---|")
    for mode in ("produce", "consume"):
        base = statistics.median(x[0] for x in results[("PLAINTEXT", mode)])
        for protocol in PROTOCOLS:
            runs = results[(protocol, mode)]
            rate = statistics.median(x[0] for x in runs)
            mb = statistics.median(x[1] for x in runs)
            cpu = statistics.median(x[2] for x in runs)
            label = "SASL_SSL (SCRAM-SHA-512)" if protocol == "SASL_SSL" else protocol
            print(f"| {label} | {mode} | {rate:,.0f} | {mb:.1f} | {cpu:.2f} | {rate / base:.2f}x |")


if __name__ == "__main__":
    main()
