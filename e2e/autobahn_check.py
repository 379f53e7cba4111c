#!/usr/bin/env python3
"""Checks an Autobahn-format report (index.json, as written by the Autobahn TestSuite or kosoku).

Fails unless every executed case's `behavior` is OK, NON-STRICT or INFORMATIONAL. Prints the
counts per behavior and per closing-handshake behavior (`behaviorClose`). With --strict-close the
closing behavior must be OK or INFORMATIONAL as well.

    python3 autobahn_check.py REPORT_DIR/index.json [--min-cases N] [--strict-close]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

PASS = {"OK", "NON-STRICT", "INFORMATIONAL"}
PASS_CLOSE = {"OK", "INFORMATIONAL"}


def case_key(case_id: str):
    return tuple(int(p) if p.isdigit() else p for p in case_id.split("."))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index", help="path to index.json")
    ap.add_argument("--min-cases", type=int, default=1,
                    help="fail when fewer cases ran (guards against an empty or truncated run)")
    ap.add_argument("--strict-close", action="store_true",
                    help="also require behaviorClose OK or INFORMATIONAL")
    args = ap.parse_args()

    with open(args.index, encoding="utf-8") as f:
        index = json.load(f)
    if not isinstance(index, dict) or not index:
        print(f"{args.index}: no agents in the report", file=sys.stderr)
        return 1

    failed = False
    for agent, cases in sorted(index.items()):
        behaviors = Counter(c.get("behavior", "?") for c in cases.values())
        closes = Counter(c.get("behaviorClose", "?") for c in cases.values())
        sections = Counter(cid.split(".")[0] for cid in cases)
        print(f"agent {agent}: {len(cases)} cases")
        print("  behavior:      " + ", ".join(f"{k}={v}" for k, v in sorted(behaviors.items())))
        print("  behaviorClose: " + ", ".join(f"{k}={v}" for k, v in sorted(closes.items())))
        print("  sections:      " + ", ".join(f"{k}={v}" for k, v in sorted(sections.items(), key=lambda kv: case_key(kv[0]))))
        if len(cases) < args.min_cases:
            print(f"  FAIL: only {len(cases)} cases ran, expected at least {args.min_cases}")
            failed = True
        bad = sorted((cid for cid, c in cases.items() if c.get("behavior") not in PASS), key=case_key)
        for cid in bad:
            print(f"  FAIL {cid}: behavior={cases[cid].get('behavior')} behaviorClose={cases[cid].get('behaviorClose')}")
        failed |= bool(bad)
        bad_close = sorted((cid for cid, c in cases.items() if c.get("behaviorClose") not in PASS_CLOSE), key=case_key)
        if bad_close:
            shown = ", ".join(bad_close[:10]) + (" ..." if len(bad_close) > 10 else "")
            label = "FAIL" if args.strict_close else "note"
            print(f"  {label}: {len(bad_close)} cases with a closing handshake other than OK/INFORMATIONAL: {shown}")
            failed |= args.strict_close
    print("autobahn: FAILED" if failed else "autobahn: passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
