"""The installed ocf:pyha:mfsmaster run inside an MfsLab's network namespace, with the
file-backed crm_attribute (fakebin/) first on its PATH.

AgentRunner returns (exit code, stderr) and gives every action the parameters it was made
with (the agent tests' `agent`); MfsAgent returns the completed process and can wrap the
command or put a directory first on PATH (the fault tests' `mfs`).
"""

import json
import subprocess

from . import FAKEBIN


class AgentRunner:
    def __init__(self, lab, path, **defaults):
        self.lab = lab
        self.path = path
        self.defaults = defaults  # parameters given to every action unless overridden
        self.restore_method = defaults.get("restore_method", "single-pass")
        self.cib = lab.root / "cib.json"
        self.state = lab.root / "rsctmp"
        self.state.mkdir()

    def env(self, params, timeout=60, check_level=None, interval=0, path_first=None):
        env = {
            "PATH": f"{FAKEBIN}:/usr/sbin:/usr/bin:/sbin:/bin",
            "OCF_ROOT": "/usr/lib/ocf",
            "OCF_RESOURCE_INSTANCE": "mfs",
            "OCF_RESOURCE_TYPE": "mfsmaster",
            "OCF_RESKEY_CRM_meta_timeout": str(int(timeout * 1000)),
            "OCF_RESKEY_CRM_meta_interval": str(interval),
            "HA_RSCTMP": str(self.state),
            "PYHA_MFS_CIB": str(self.cib),
        }
        if check_level is not None:
            env["OCF_CHECK_LEVEL"] = str(check_level)
        if path_first:
            env["PATH"] = f"{path_first}:{env['PATH']}"
        for key, value in {**self.defaults, **params}.items():
            env[f"OCF_RESKEY_{key}"] = str(value)
        return env

    def __call__(self, action, timeout=60, check_level=None, interval=0, path_first=None,
                 argv=None, **params):
        """Run an action; return (exit code, stderr). path_first: a directory of stand-ins
        put before everything on PATH (e.g. a failing crm_attribute); argv: what runs
        instead of the installed agent (e.g. rigs.faults.in_process_fault)."""
        result = self.lab.ns_run(argv or [str(self.path), action], check=False,
                                 timeout=timeout + 10,
                                 env=self.env(params, timeout, check_level, interval,
                                              path_first))
        return result.returncode, result.stderr

    def ocf_tester(self, cfg):
        """ocf-tester's whole sequence against this agent with MooseFS config cfg (an empty
        filesystem created at the first start), in the lab's namespace."""
        argv = ["ocf-tester", "-n", "mfs", "-o", f"config={cfg}", "-o",
                "create_filesystem=true", str(self.path)]
        env = self.env({}, timeout=60)
        del env["OCF_RESKEY_CRM_meta_timeout"], env["OCF_RESKEY_CRM_meta_interval"]
        return self.lab.ns_run(argv, check=False, timeout=240, env=env)

    def recorded(self):
        try:
            store = json.loads(self.cib.read_text())
        except FileNotFoundError:
            return None
        return store.get("crm_config//mfs-metadata-version")


class MfsAgent:
    """Runs the installed ocf:pyha:mfsmaster inside an MfsLab's network namespace,
    with the file-backed crm_attribute."""

    def __init__(self, lab, path):
        self.lab = lab
        self.path = path
        self.state = lab.root / "rsctmp"
        self.state.mkdir(exist_ok=True)
        self.cib = lab.root / "cib.json"

    def env(self, params, timeout=60, interval=0, path_first=None):
        env = {"PATH": f"{FAKEBIN}:/usr/sbin:/usr/bin:/sbin:/bin",
               "OCF_ROOT": "/usr/lib/ocf", "OCF_RESOURCE_INSTANCE": "mfs",
               "OCF_RESOURCE_TYPE": "mfsmaster",
               "OCF_RESKEY_CRM_meta_timeout": str(int(timeout * 1000)),
               "OCF_RESKEY_CRM_meta_interval": str(interval),
               "HA_RSCTMP": str(self.state), "PYHA_MFS_CIB": str(self.cib)}
        if path_first:
            env["PATH"] = f"{path_first}:{env['PATH']}"
        env.update({f"OCF_RESKEY_{k}": str(v) for k, v in params.items()})
        return env

    def argv(self, action, wrap=None):
        argv = [str(self.path), action]
        return self.lab.ns(wrap(argv) if wrap else argv)

    def __call__(self, action, timeout=60, interval=0, wrap=None, **params):
        return subprocess.run(self.argv(action, wrap), env=self.env(params, timeout, interval),
                              capture_output=True, text=True, timeout=timeout + 30)
