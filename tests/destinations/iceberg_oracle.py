"""Oracle of the iceberg destination tests: pyiceberg opens etl's SQL catalog, reads every
table, replays each changelog (or reads each mirror) and compares it with the source (md5 of
the ordered rows).

Prints one JSON object: {"tables": {name: {...}}, "problems": [...]}; exit status 0 even when
problems are found (the Rust test asserts on them), non-zero only when the oracle itself fails.

Checks per table:
- no change twice: (_etl_lsn, _etl_seq) unique among changes, _etl_seq unique among copied rows;
- replaying copy + changes in (_etl_lsn, _etl_seq) order gives the source's rows (md5);
- every snapshot that carries a position (etl.commit-lsn, etl.ordinal) holds exactly the final
  log's changes up to that position and every copied row: no half batch, no gap, no orphan.

With --mode mirror, per table: the scan (position deletes applied by pyiceberg) equals the
source (md5 of the ordered rows) with no key twice, and no snapshot etl committed shows a key
twice.

Every table also reports its partition spec and how many partitions its live data files (and
delete files) hold; with --pruned schema.table:column:op:value (op ge or eq), a scan filtered by
the predicate must return exactly the full scan's rows that satisfy it while planning fewer
files (readers prune files by the partition values etl wrote, so a wrong value loses rows).
"""

import argparse
import datetime
import decimal
import hashlib
import json
import sys
import uuid

import psycopg2
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.expressions import EqualTo, GreaterThanOrEqual

JSON_TYPES = {114, 3802}


def norm(value, is_json=False):
    if value is None:
        return None
    if is_json:
        if isinstance(value, str):
            value = json.loads(value)
        return json.dumps(value, sort_keys=True)
    if isinstance(value, bool):
        return value
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc)
        return value.isoformat()
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, list):
        return [norm(v) for v in value]
    if isinstance(value, float):
        return repr(value)
    return value


def digest(rows):
    h = hashlib.md5()
    for row in rows:
        h.update(json.dumps(row).encode())
        h.update(b"\n")
    return h.hexdigest()


def source_rows(conn, qualified, key):
    with conn.cursor() as cur:
        cur.execute(f"select * from {qualified}")
        columns = [d.name for d in cur.description]
        json_columns = {d.name for d in cur.description if d.type_code in JSON_TYPES}
        rows = cur.fetchall()
    out = {}
    for row in rows:
        values = dict(zip(columns, row))
        out[str(values[key])] = [norm(values[c], c in json_columns) for c in columns]
    return columns, json_columns, out


def replay(log, columns, json_columns, key, problems, name):
    state = {}
    for row in log:
        op = row["_etl_op"]
        if op == "truncate":
            state.clear()
            continue
        if op == "delete":
            if state.pop(str(row[key]), None) is None:
                problems.append(f"{name}: delete of key {row[key]} that the log does not hold")
            continue
        normalized = [norm(row.get(c), c in json_columns) for c in columns]
        if op == "update":
            old = str(row[key])
            if row.get("_etl_old_key"):
                old = str(json.loads(row["_etl_old_key"])[key])
            previous = state.pop(old, None)
            if previous is None:
                problems.append(f"{name}: update of key {old} that the log does not hold")
            else:
                for column in json.loads(row["_etl_unchanged"] or "[]"):
                    index = columns.index(column)
                    normalized[index] = previous[index]
        state[str(row[key])] = normalized
    return state


def check_table(catalog, namespace, conn, qualified, key, problems):
    schema, table = qualified.split(".")
    name = f"{schema}_{table}"
    t = catalog.load_table(f"{namespace}.{name}")
    log = t.scan().to_arrow().to_pylist()
    copies = [r for r in log if r["_etl_op"] == "copy"]
    changes = [r for r in log if r["_etl_op"] != "copy"]
    copy_seqs = [r["_etl_seq"] for r in copies]
    change_positions = [(r["_etl_lsn"], r["_etl_seq"]) for r in changes]
    duplicates = (len(copy_seqs) - len(set(copy_seqs))) + (
        len(change_positions) - len(set(change_positions))
    )
    if duplicates:
        problems.append(f"{name}: {duplicates} rows appear twice")
    if t.properties.get("etl.copy-finished") != "true":
        problems.append(f"{name}: copy not marked finished")
    log.sort(key=lambda r: (r["_etl_lsn"], r["_etl_seq"]) if r["_etl_op"] != "copy" else (-1, r["_etl_seq"]))
    columns, json_columns, source = source_rows(conn, qualified, key)
    state = replay(log, columns, json_columns, key, problems, name)
    source_md5 = digest([source[k] for k in sorted(source, key=int)])
    replay_md5 = digest([state[k] for k in sorted(state, key=int)])
    if source_md5 != replay_md5:
        missing = sorted(set(source) - set(state), key=int)[:5]
        extra = sorted(set(state) - set(source), key=int)[:5]
        differ = [k for k in sorted(set(source) & set(state), key=int) if source[k] != state[k]][:3]
        problems.append(
            f"{name}: replay differs from the source: missing keys {missing}, extra keys {extra}, "
            f"differing {[(k, source[k], state[k]) for k in differ]}"
        )
    final = set(change_positions)
    snapshots = [
        s for s in t.snapshots()
        if "etl.commit-lsn" in s.summary.additional_properties
    ]
    if len(snapshots) > 40:
        step = len(snapshots) / 40
        snapshots = [snapshots[int(i * step)] for i in range(40)] + [snapshots[-1]]
    for s in snapshots:
        props = s.summary.additional_properties
        position = (int(props["etl.commit-lsn"]), int(props["etl.ordinal"]))
        rows = t.scan(snapshot_id=s.snapshot_id, selected_fields=("_etl_op", "_etl_lsn", "_etl_seq")).to_arrow().to_pylist()
        seen = {(r["_etl_lsn"], r["_etl_seq"]) for r in rows if r["_etl_op"] != "copy"}
        expected = {p for p in final if p <= position}
        if seen != expected:
            problems.append(
                f"{name}: snapshot {s.snapshot_id} at {position} holds {len(seen)} changes, "
                f"the final log has {len(expected)} up to there"
            )
        copied = sum(1 for r in rows if r["_etl_op"] == "copy")
        if copied != len(copies):
            problems.append(f"{name}: snapshot {s.snapshot_id} holds {copied} copied rows of {len(copies)}")
    return name, {
        "rows": len(log),
        "copied": len(copies),
        "changes": len(changes),
        "snapshots_checked": len(snapshots),
        "source_rows": len(source),
        "source_md5": source_md5,
        "replay_md5": replay_md5,
    }


def check_mirror(catalog, namespace, conn, qualified, key, problems):
    schema, table = qualified.split(".")
    name = f"{schema}_{table}"
    t = catalog.load_table(f"{namespace}.{name}")
    if t.properties.get("etl.copy-finished") != "true":
        problems.append(f"{name}: copy not marked finished")
    if t.properties.get("etl.mode") != "mirror":
        problems.append(f"{name}: etl.mode is {t.properties.get('etl.mode')}, not mirror")
    columns, json_columns, source = source_rows(conn, qualified, key)
    mirror = {}
    twice = 0
    for row in t.scan().to_arrow().to_pylist():
        k = str(row[key])
        if k in mirror:
            twice += 1
        mirror[k] = [norm(row.get(c), c in json_columns) for c in columns]
    if twice:
        problems.append(f"{name}: {twice} keys appear twice")
    source_md5 = digest([source[k] for k in sorted(source, key=int)])
    mirror_md5 = digest([mirror[k] for k in sorted(mirror, key=int)])
    if source_md5 != mirror_md5:
        missing = sorted(set(source) - set(mirror), key=int)[:5]
        extra = sorted(set(mirror) - set(source), key=int)[:5]
        differ = [k for k in sorted(set(source) & set(mirror), key=int) if source[k] != mirror[k]][:3]
        problems.append(
            f"{name}: mirror differs from the source: missing keys {missing}, extra keys {extra}, "
            f"differing {[(k, source[k], mirror[k]) for k in differ]}"
        )
    snapshots = [
        s for s in t.snapshots()
        if "etl.commit-lsn" in s.summary.additional_properties
    ]
    position_deletes = sum(
        int(s.summary.additional_properties.get("added-position-deletes", 0)) for s in snapshots
    )
    compactions = sum(1 for s in snapshots if s.summary.operation.value == "replace")
    tasks = list(t.scan().plan_files())
    delete_files = {d.file_path for task in tasks for d in task.delete_files}
    if len(snapshots) > 40:
        step = len(snapshots) / 40
        snapshots = [snapshots[int(i * step)] for i in range(40)] + [snapshots[-1]]
    for s in snapshots:
        keys = t.scan(snapshot_id=s.snapshot_id, selected_fields=(key,)).to_arrow().column(key).to_pylist()
        if len(keys) != len(set(keys)):
            problems.append(
                f"{name}: snapshot {s.snapshot_id} shows {len(keys) - len(set(keys))} keys twice"
            )
    return name, {
        "rows": len(mirror),
        "snapshots_checked": len(snapshots),
        "position_deletes": position_deletes,
        "compactions": compactions,
        "live_files": len(tasks) + len(delete_files),
        "batch_files": len(delete_files)
        + sum(1 for task in tasks if task.file.file_path.rsplit("/", 1)[-1].startswith("mirror-")),
        "source_rows": len(source),
        "source_md5": source_md5,
        "replay_md5": mirror_md5,
    }


def partitioning(t, pruned, problems, name):
    """The table's partition spec, partitions of its live files, and the pruning check."""
    schema = t.schema()
    spec = [f"{schema.find_column_name(f.source_id)}:{f.transform}" for f in t.spec().fields]
    tasks = list(t.scan().plan_files())
    data_partitions = {repr(task.file.partition) for task in tasks}
    delete_partitions = {repr(d.partition) for task in tasks for d in task.delete_files}
    report = {
        "partition_spec": spec,
        "partitions": len(data_partitions),
        "delete_partitions": len(delete_partitions),
    }
    if pruned is None:
        return report
    column, op, value = pruned
    try:
        literal = int(value)
        wanted = literal
    except ValueError:
        literal = value
        wanted = datetime.datetime.fromisoformat(value)
    predicate = GreaterThanOrEqual(column, literal) if op == "ge" else EqualTo(column, literal)
    keep = (lambda v: v >= wanted) if op == "ge" else (lambda v: v == wanted)
    everything = t.scan().to_arrow().to_pylist()
    expected = sorted(json.dumps(r, default=str, sort_keys=True) for r in everything if r[column] is not None and keep(r[column]))
    filtered = t.scan(row_filter=predicate)
    got = sorted(json.dumps(r, default=str, sort_keys=True) for r in filtered.to_arrow().to_pylist())
    if got != expected:
        problems.append(
            f"{name}: scan filtered by {column} {op} {value} returns {len(got)} rows, "
            f"the full scan holds {len(expected)} such rows"
        )
    report["pruned_rows"] = len(got)
    report["pruned_files"] = len(list(filtered.plan_files()))
    report["all_files"] = len(tasks)
    return report


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--catalog-uri", required=True)
    parser.add_argument("--catalog-name", required=True)
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--source-dsn", required=True)
    parser.add_argument("--table", action="append", required=True, help="schema.table:key")
    parser.add_argument("--mode", choices=("changelog", "mirror"), default="changelog")
    parser.add_argument("--pruned", action="append", default=[], help="schema.table:column:op:value")
    parser.add_argument("--property", action="append", default=[], help="catalog property key=value (S3 settings)")
    args = parser.parse_args()
    pruned = {}
    for spec in args.pruned:
        qualified, column, op, value = spec.split(":", 3)
        pruned[qualified] = (column, op, value)
    properties = dict(p.split("=", 1) for p in args.property)
    catalog = SqlCatalog(args.catalog_name, uri=args.catalog_uri, warehouse=args.warehouse, **properties)
    conn = psycopg2.connect(args.source_dsn)
    conn.set_session(readonly=True)
    with conn.cursor() as cur:
        cur.execute("set timezone = 'UTC'")
    problems = []
    tables = {}
    listed = {".".join(ident) for ident in catalog.list_tables(args.namespace)}
    for spec in args.table:
        qualified, key = spec.split(":")
        try:
            check = check_mirror if args.mode == "mirror" else check_table
            name, result = check(catalog, args.namespace, conn, qualified, key, problems)
            t = catalog.load_table(f"{args.namespace}.{name}")
            result.update(partitioning(t, pruned.get(qualified), problems, name))
            tables[name] = result
        except Exception as e:  # the test reports it
            problems.append(f"{qualified}: {type(e).__name__}: {e}")
    json.dump({"tables": tables, "listed": sorted(listed), "problems": problems}, sys.stdout)


if __name__ == "__main__":
    main()
