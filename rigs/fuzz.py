"""The bad-input campaign each agent's test_<agent>_bad_input.py runs on every parameter
(property-based, hypothesis).

Each generated value replaces one parameter of an otherwise valid
configuration, and the agent runs its actions in-process with every command
it tries to run intercepted (nothing is executed) and its state files
redirected into a temporary directory. For every case:
- a clean OCF exit code, with an ocf-exit-reason whenever it is a failure;
- no unhandled exception (the shim would report "failed unexpectedly");
- no command other than the agent's own tools, and no value turned into an
  option (a value starting with "-" never stands as an argument by itself);
- no file written outside its place.

An agent's test gives its Rules: a valid configuration in a Sandbox, the
commands it may run with the only options it may pass them, the parameters
whose values are options or programs by design.

PYHA_FUZZ_EXAMPLES sets the number of cases per agent (default 10000; CI
runs the default, quick local runs can lower it). With PYHA_FUZZ_RECORD set,
cases and violations are counted into that file; bench/reliability.py prints
the figures.
"""

import contextlib
import importlib
import io
import os
import tempfile
from typing import Callable, NamedTuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocf_agents import ocf

EXAMPLES = int(os.environ.get("PYHA_FUZZ_EXAMPLES", "10000"))
VALID_EXIT_CODES = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 190, 191}
ACTIONS = ("validate-all", "probe", "monitor", "start", "stop")

NASTY = [
    "", " ", "-", "--", "-rf", "--help", "-o", "-P /tmp", "-d", "$(touch /tmp/pyha-pwned)",
    "`id`", "; rm -rf /", "a|b", "a&&b", "\n", "a\nb", "x\r\ny", "../../etc/passwd",
    "/etc/passwd", "/", ".", "..", "/tmp/../etc", "x" * 5000, "é中文😀", "*", "~root", "%s%n",
    "{}", "[", "]", "[::1]", ",", "=", "'", '"', "\\", "\t", "10.0.0.1;reboot", "0x10",
    "1e9", "99999999999999999999", "-1", "true", "no", "root", "none", "/dev/null",
    "/proc/self/mem", "@netgroup", "10.0.0.0/33", "a:b:c", "rw,fsid=1", "(rw)",
]
VALUES = st.one_of(
    st.sampled_from(NASTY),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
            max_size=200),
    st.builds(lambda a, b: a + b, st.sampled_from(NASTY),
              st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                             blacklist_characters="\x00"), max_size=20)),
)


class Tripwire:
    """Stands in for ocf.start_command: records argv, runs nothing (every command
    answers exit 1)."""

    def __init__(self):
        self.calls = []

    def __call__(self, argv, stdin=None, env=None):
        self.calls.append(list(argv))
        return Refused(argv)


class Refused:
    def __init__(self, argv):
        self.argv = argv

    def wait(self, timeout):
        return ocf.Completed(self.argv, 1, "", "refused by the test tripwire", 0.0)


class Sandbox:
    """A valid configuration and private paths for one agent."""

    def __init__(self, root):
        self.root = root
        self.rsctmp = os.path.join(root, "rsctmp")
        self.nfs = os.path.join(root, "nfs")
        self.export = os.path.join(root, "export")
        for d in (self.rsctmp, self.nfs, self.export, os.path.join(self.nfs, "sm")):
            os.makedirs(d, exist_ok=True)


CRM_ATTRIBUTE_OPTIONS = {"--quiet", "--type", "--name", "--query", "--update", "--delete",
                         "--lifetime", "--node"}


class Rules(NamedTuple):
    """What one agent's bad-input test allows."""
    valid_configuration: Callable  # (sandbox, monkeypatch) -> {parameter: value}
    commands: dict                 # program -> the only options the agent may pass it
    option_params: frozenset = frozenset()   # parameters whose values are options by design
    program_params: frozenset = frozenset()  # parameters that name a program: argv[0]


def parameters(name):
    """The parameter names of ocf_agents.<name> (none when there is no such agent)."""
    if importlib.util.find_spec(f"ocf_agents.{name}") is None:
        return []
    return [p.name for p in importlib.import_module(f"ocf_agents.{name}").AGENT.parameters]


def run_action(agent, action, env, monkeypatch):
    for key in [k for k in os.environ if k.startswith(("OCF_", "HA_"))]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if action == "probe":
        action = "monitor"
        monkeypatch.setenv("OCF_RESKEY_CRM_meta_interval", "0")
    elif action == "monitor":
        monkeypatch.setenv("OCF_RESKEY_CRM_meta_interval", "10000")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = agent.run([action])
    return code, err.getvalue()


def check_case(name, rules, param, value, action, monkeypatch, root):
    setup, commands, option_params = (rules.valid_configuration, rules.commands,
                                      rules.option_params)
    module = importlib.import_module(f"ocf_agents.{name}")
    sandbox = Sandbox(tempfile.mkdtemp(dir=root))
    params = setup(sandbox, monkeypatch)
    params[param] = value
    tripwire = Tripwire()
    monkeypatch.setattr(ocf, "start_command", tripwire)
    written = []
    real_write = ocf.write_file_atomically

    def recording_write(path, data, mode=0o644):
        written.append(os.path.realpath(os.path.dirname(path)))
        return real_write(path, data, mode)
    # every module of the agent writes through its own imported name (an agent split
    # into modules, e.g. mfsmaster + mfsrestore, writes from each)
    import sys
    for loaded in [m for name, m in sys.modules.items() if name.startswith("ocf_agents.")]:
        if getattr(loaded, "write_file_atomically", None) is real_write:
            monkeypatch.setattr(loaded, "write_file_atomically", recording_write)
    env = {"OCF_RESOURCE_INSTANCE": "fuzz", "HA_RSCTMP": sandbox.rsctmp,
           "OCF_RESKEY_CRM_meta_timeout": "2000", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    env.update({f"OCF_RESKEY_{k}": v for k, v in params.items()})
    code, stderr = run_action(module.AGENT, action, env, monkeypatch)

    shown = value if len(value) < 80 else value[:60] + f"...({len(value)} chars)"
    where = f"{name} {action} {param}={shown!r}"
    # (kind, message): kinds are the columns of bench/reliability.py's table
    violations = []
    if code not in VALID_EXIT_CODES:
        violations.append(("unclean", f"{where}: exit code {code}"))
    # the shim's words for an unhandled exception, at the start of an exit reason
    # (a value may itself contain them, quoted in a reason further on)
    if f"ocf-exit-reason:{action.replace('probe', 'monitor')} failed unexpectedly" in stderr \
            or "Traceback (most recent call last)" in stderr:
        violations.append(("traceback", f"{where}: {stderr[:300]}"))
    if code not in (0, 7, 8) and "ocf-exit-reason:" not in stderr:
        violations.append(("unclean", f"{where}: no exit reason: {stderr[:300]}"))
    for argv in tripwire.calls:
        if param in rules.program_params and argv[0] == value:
            argv = [param] + argv[1:]
        if argv[0] not in commands:
            violations.append(("injection", f"{where}: ran {argv}"))
            continue
        if param in option_params:
            continue
        # "--uts=FILE" is the option --uts with an attached value
        options = {arg.split("=", 1)[0] for arg in argv[1:] if arg.startswith("-")}
        if not options <= commands[argv[0]]:
            violations.append(("injection", f"{where}: value became an option: {argv}"))
    for directory in written:
        if not directory.startswith(os.path.realpath(sandbox.root)):
            violations.append(("stray", f"{where}: wrote into {directory}"))
    return violations


# PYHA_FUZZ_RECORD=<file>: count cases and violations per parameter (one JSON line
# each, appended) instead of stopping at the first violation; bench/reliability.py
# reads the file. The test still fails at the end when anything was found.
RECORD = os.environ.get("PYHA_FUZZ_RECORD")


def any_value_gives_a_clean_answer(name, rules, param, monkeypatch, tmp_path_factory):
    """The body of every agent's test_any_value_of_any_parameter_gives_a_clean_answer:
    generated values of param, each through a random action; fails on the first violation
    (with PYHA_FUZZ_RECORD: counts them all, then fails if there was any)."""
    root = str(tmp_path_factory.mktemp(f"fuzz-{name}-{param}"))
    # At least EXAMPLES cases per agent: round up, plus a little for the
    # duplicates hypothesis skips.
    count = len(parameters(name))
    per_parameter = max(50, -(-EXAMPLES * 102 // 100 // count))
    counts = {"agent": name, "parameter": param, "cases": 0, "traceback": 0,
              "injection": 0, "stray": 0, "unclean": 0}
    examples = []

    @settings(max_examples=per_parameter, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(value=VALUES, action=st.sampled_from(ACTIONS))
    def case(value, action):
        with monkeypatch.context() as patch:
            violations = check_case(name, rules, param, value, action, patch, root)
        counts["cases"] += 1
        for kind, message in violations:
            counts[kind] += 1
            examples.append(message)
        if not RECORD:
            assert not violations, violations[0][1]

    case()
    if RECORD:
        import json
        with open(RECORD, "a") as f:
            f.write(json.dumps(dict(counts, examples=examples[:5])) + "\n")
        assert not examples, examples[0]
