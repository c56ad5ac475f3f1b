"""``counterpoint audit RUN_KEY``: a run's hash-chained audit log (``store.audit``) and
its verification (``store.verify_audit``)."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import add_output_flags, open_store
from ._exits import OK, RUN_FAILED, CommandError
from ._output import Output, jsonable, preview, timestamp


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "audit", help="show a run's audit log; --verify checks it was not altered",
        description="Show the audit log of a run: who and what started, finished and "
                    "decided, in order. With --verify, check the log's hash chain: exit 0 "
                    "if it is intact, 1 if an entry was altered, removed or inserted (the "
                    "first bad entry is printed).")
    parser.add_argument("run_key", metavar="RUN_KEY")
    parser.add_argument("--store", metavar="PATH", required=True,
                        help="the run store (SQLite file)")
    parser.add_argument("--verify", action="store_true",
                        help="check the hash chain (exit 1 if it was tampered with)")
    add_output_flags(parser)
    parser.set_defaults(handler=audit_command)


def audit_command(args: argparse.Namespace, out: Output) -> int:
    store = open_store(args.store)
    try:
        store.load_run(args.run_key)  # an unknown run key is a StoreError (exit 5)
        entries = store.audit(args.run_key)
        verification = store.verify_audit(args.run_key) if args.verify else None
    finally:
        store.close()
    if out.json:
        doc: dict[str, Any] = {"run_key": args.run_key,
                               "entries": [jsonable(entry) for entry in entries]}
        if verification is not None:
            doc["verification"] = {"ok": verification.ok, "entries": verification.entries,
                                   "problem": verification.problem, "seq": verification.seq}
        out.document(doc)
    else:
        out.table(["seq", "time", "kind", "agent", "data"],
                  [[str(e.seq), timestamp(e.time), e.kind, e.agent or "", preview(e.data, 60)]
                   for e in entries])
        if verification is not None:
            if verification.ok:
                out.line(f"audit log intact: {verification.entries} entries, hash chain "
                         "verified")
            else:
                bad = next((e for e in entries if e.seq == verification.seq), None)
                out.line(f"AUDIT LOG TAMPERED: {verification.problem}")
                if bad is not None:
                    out.line(f"  first bad entry: seq {bad.seq} {bad.kind} "
                             f"{bad.agent or ''} {preview(bad.data, 60)}".rstrip())
    if verification is None or verification.ok:
        return OK
    raise CommandError(
        f"the audit log of run {args.run_key} was tampered with: {verification.problem} "
        f"(first bad entry: seq {verification.seq})", RUN_FAILED, "audit_tampered",
        run_key=args.run_key, seq=verification.seq, problem=verification.problem)
