#!/usr/bin/python3
"""The reliability campaign (issue 6): bad input, faults, safe files. Prints per agent:
inputs tried, tracebacks, injections, stray files, unclean answers, fault scenarios run /
survived, data lost - as a Markdown table (README's "Reliability" section).

    /usr/bin/python3 -m bench.reliability [--examples N] [--skip-fuzz] [--skip-faults]

--examples sets the generated cases per agent (PYHA_FUZZ_EXAMPLES; default 10000).
Bad input: each agent's tests/<agent>/test_<agent>_bad_input.py with PYHA_FUZZ_RECORD
(counts every case, does not stop at the first violation). Faults: every test in
tests/<agent>/ marked fault("<agent>"), through the pytest plugin rigs/recorder.py.
Needs root (namespaces, mounts), like the tests.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = "/usr/bin/python3"
AGENTS = ("nfsserver", "nfsexport", "nfsnotify", "drbd", "mfsmaster")
BAD_INPUT_TESTS = [f"tests/{agent}/test_{agent}_bad_input.py" for agent in AGENTS]
FAULT_TESTS = ["-m", "fault", *(f"tests/{agent}" for agent in AGENTS)]


def pytest(args, env, log):
    with open(log, "w") as out:
        return subprocess.run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                              cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT).returncode


def read_lines(path):
    try:
        return [json.loads(line) for line in Path(path).read_text().splitlines() if line]
    except FileNotFoundError:
        return []


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int,
                        default=int(os.environ.get("PYHA_FUZZ_EXAMPLES", "10000")))
    parser.add_argument("--skip-fuzz", action="store_true")
    parser.add_argument("--skip-faults", action="store_true")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pyha-rel-bench-"))
    env = dict(os.environ, PYHA_FUZZ_EXAMPLES=str(options.examples),
               PYHA_FUZZ_RECORD=str(work / "fuzz.jsonl"),
               PYHA_RELIABILITY_RESULTS=str(work / "faults.jsonl"))
    codes = {}
    if not options.skip_fuzz:
        print(f"bad input: {options.examples} cases per agent ...", file=sys.stderr)
        codes["bad input"] = pytest(BAD_INPUT_TESTS, env, work / "fuzz.log")
    if not options.skip_faults:
        print("fault scenarios ...", file=sys.stderr)
        codes["faults"] = pytest(["-p", "rigs.recorder", *FAULT_TESTS], env, work / "faults.log")

    def new_row():
        return {"cases": 0, "traceback": 0, "injection": 0, "stray": 0, "unclean": 0,
                "run": 0, "survived": 0, "lost": 0, "fuzzed": False}
    rows = {agent: new_row() for agent in AGENTS}
    examples = []
    for line in read_lines(work / "fuzz.jsonl"):
        row = rows.setdefault(line["agent"], new_row())
        row["fuzzed"] = True
        for key in ("cases", "traceback", "injection", "stray", "unclean"):
            row[key] += line[key]
        examples += line.get("examples", [])
    for line in read_lines(work / "faults.jsonl"):
        row = rows.setdefault(line["agent"], new_row())
        row["run"] += 1
        row["survived"] += line["outcome"] == "passed"
        row["lost"] += line["data_lost"]

    print("| Agent | Inputs tried | Tracebacks | Injections | Stray files | Unclean answers "
          "| Fault scenarios run / survived | Data lost |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for agent, r in rows.items():
        fuzz = [f"{r['cases']:,}", r["traceback"], r["injection"], r["stray"], r["unclean"]] \
            if r["fuzzed"] else ["-"] * 5
        print(f"| {agent} | " + " | ".join(map(str, fuzz))
              + f" | {r['run']} / {r['survived']} | {r['lost']} |")
    for example in examples[:10]:
        print(f"\nviolation: {example}")
    failed = {name: code for name, code in codes.items() if code}
    if failed:
        print(f"\nfailing runs: {failed}; logs in {work}")
    print(f"\n(logs and raw results: {work})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
