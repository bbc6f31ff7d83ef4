"""Bad input for ocf:pyha:drbd: any value of any parameter, through validate-all, probe,
monitor, start and stop in-process with every command intercepted, gives a clean answer
(rigs/fuzz.py runs the campaign; here: a valid configuration and what the agent may run)."""

import os

import pytest

from rigs import fuzz


def valid_configuration(sandbox, monkeypatch):
    proc = os.path.join(sandbox.root, "proc_drbd")
    with open(proc, "w") as f:
        f.write("version: 9.1.17-1 (api:2/proto:86-121)\n")
    return {"drbd_resource": "r0", "drbdconf": os.path.join(sandbox.root, "drbd.conf"),
            "proc_drbd": proc}


# the commands it may run, with the only options it may pass them
RULES = fuzz.Rules(valid_configuration, {
    "drbdadm": {"-c", "--version", "-v", "--discard-my-data", "-S"},
    "drbdsetup": {"--now"},
    "crm_attribute": fuzz.CRM_ATTRIBUTE_OPTIONS,
    "crm_node": {"-n"}, "crm_resource": {"--resource", "--locate"}, "modprobe": {"-s"},
    "modinfo": {"-F"},
})


@pytest.mark.parametrize("param", fuzz.parameters("drbd"))
def test_any_value_of_any_parameter_gives_a_clean_answer(param, monkeypatch, tmp_path_factory):
    fuzz.any_value_gives_a_clean_answer("drbd", RULES, param, monkeypatch, tmp_path_factory)
