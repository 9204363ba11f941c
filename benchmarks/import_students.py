"""Benchmark: a 1,000,000-row students.csv on PostgreSQL against a raw COPY baseline.

Measures, in one run on one server: (a) COPY of the raw file into an indexed
table (the baseline), (b) our initial full import, (c) an unchanged re-import,
(d) a re-import with 1% of rows changed and 1% removed, (e) `visitor-sync
validate` alone. Each of (b)-(e) runs the real CLI in a child process, so its
peak RSS is its own. Prints rows/s, the ratio to (a) and peak RSS.

    python3 benchmarks/import_students.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.postgres import PostgresServer
from visitor_sync.samples import STUDENT_HEADER, student_rows, write_csv

TARGETS = {"initial import": 5.0, "unchanged re-import": 3.0}
RSS_LIMIT_MB = 300


def changed_copy(source: Path, target: Path) -> None:
    """The same roster with every 100th row changed and every 100th (offset 50) removed."""
    with source.open(newline="") as inp, target.open("w", newline="") as out:
        reader, writer = csv.reader(inp), csv.writer(out)
        writer.writerow(next(reader))
        for index, row in enumerate(reader):
            if index % 100 == 50:
                continue
            if index % 100 == 0:
                row[10] = "Room 999"
            writer.writerow(row)


def copy_baseline(conninfo: str, path: Path) -> float:
    columns = ", ".join(f'"{name}" text' for name in STUDENT_HEADER)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f"CREATE TABLE raw_students ({columns})")
        connection.execute('CREATE UNIQUE INDEX ON raw_students ("Student ID")')
        started = time.perf_counter()
        with connection.cursor() as cursor, path.open("rb") as stream, cursor.copy(
                "COPY raw_students FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
            while block := stream.read(1 << 20):
                copy.write(block)
        return time.perf_counter() - started


def timed_child(command: list[str], ok: tuple[int, ...] = (0,)) -> tuple[float, float]:
    """Wall time and peak RSS (MiB) of a child process that must exit with one of ``ok``."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) not in ok:
        assert process.stderr is not None
        raise SystemExit(f"{command} failed: {process.stderr.read().decode()}")
    return elapsed, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows
    cli = [sys.executable, "-m", "visitor_sync.cli"]
    with tempfile.TemporaryDirectory(prefix="vs-bench-") as scratch, PostgresServer() as server:
        work = Path(scratch)
        original = write_csv(work / "students.csv", STUDENT_HEADER, student_rows(rows))
        changed = work / "students-changed.csv"
        changed_copy(original, changed)
        size_mb = original.stat().st_size / 2**20
        print(f"{rows:,} rows, {size_mb:.0f} MiB, PostgreSQL {server.port}")
        dbname = server.create_database().rsplit("/", 1)[1]
        baseline = copy_baseline(server.conninfo(dbname), original)
        results = [("(a) COPY into indexed table", baseline, None)]
        url = server.url(dbname)
        inbox = work / "inbox"
        inbox.mkdir()
        importing = [*cli, "import", "--district", "bench", "--source", str(inbox), "--db", url,
                     "--quiet-period", "0"]
        for label, path in (("(b) initial import", original), ("(c) unchanged re-import", original),
                            ("(d) 1% changed + 1% removed", changed)):
            shutil.copyfile(path, inbox / "students.csv")
            elapsed, rss = timed_child(importing)
            results.append((label, elapsed, rss))
        elapsed, rss = timed_child([*cli, "validate", str(original)], ok=(0, 1))
        results.append(("(e) validate alone", elapsed, rss))
    print(f"{'phase':32} {'seconds':>8} {'rows/s':>10} {'x COPY':>7} {'peak RSS':>9}")
    for label, elapsed, rss in results:
        print(f"{label:32} {elapsed:8.2f} {rows / elapsed:10,.0f} {elapsed / baseline:7.2f} "
              + (f"{rss:7.0f}MB" if rss is not None else f"{'-':>9}"))
    for label, elapsed, _ in results:
        for name, limit in TARGETS.items():
            if name in label:
                verdict = "ok" if elapsed / baseline <= limit else "OVER"
                print(f"target {name}: <= {limit}x COPY -> {elapsed / baseline:.2f}x {verdict}")
    worst = max(rss for _, _, rss in results if rss is not None)
    print(f"target peak RSS < {RSS_LIMIT_MB} MB -> {worst:.0f} MB "
          f"{'ok' if worst < RSS_LIMIT_MB else 'OVER'}")


if __name__ == "__main__":
    main()
