"""Bad input for ocf:pyha:nfsexport: any value of any parameter, through validate-all, probe,
monitor, start and stop in-process with every command intercepted, gives a clean answer
(rigs/fuzz.py runs the campaign; here: a valid configuration and what the agent may run)."""

import os

import pytest

from rigs import fuzz


def valid_configuration(sandbox, monkeypatch):
    from ocf_agents import nfsexport
    for name in ("ETAB", "RMTAB", "RMTAB_LOCK"):
        monkeypatch.setattr(nfsexport, name, os.path.join(sandbox.nfs, name.lower()))
    return {"clientspec": "10.213.0.0/24", "directory": sandbox.export, "fsid": "1"}


# the commands it may run, with the only options it may pass them
RULES = fuzz.Rules(valid_configuration, {"exportfs": {"-v", "-o", "-u", "-f"}})


@pytest.mark.parametrize("param", fuzz.parameters("nfsexport"))
def test_any_value_of_any_parameter_gives_a_clean_answer(param, monkeypatch, tmp_path_factory):
    fuzz.any_value_gives_a_clean_answer("nfsexport", RULES, param, monkeypatch, tmp_path_factory)
