"""Bad input for ocf:pyha:nfsnotify: any value of any parameter, through validate-all, probe,
monitor, start and stop in-process with every command intercepted, gives a clean answer
(rigs/fuzz.py runs the campaign; here: a valid configuration and what the agent may run)."""

import pytest

from rigs import fuzz


def valid_configuration(sandbox, monkeypatch):
    from ocf_agents import nfsnotify
    monkeypatch.setattr(nfsnotify, "STATD_DIR_CANDIDATES", (sandbox.nfs,))
    return {"source_host": "localhost"}


# the commands it may run, with the only options it may pass them; notify_args are
# options by design
RULES = fuzz.Rules(valid_configuration, {"sm-notify": {"-f", "-v", "-P"}},
                   option_params={"notify_args"})


@pytest.mark.parametrize("param", fuzz.parameters("nfsnotify"))
def test_any_value_of_any_parameter_gives_a_clean_answer(param, monkeypatch, tmp_path_factory):
    fuzz.any_value_gives_a_clean_answer("nfsnotify", RULES, param, monkeypatch, tmp_path_factory)
