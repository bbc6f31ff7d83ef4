"""Bad input for ocf:pyha:mfsmaster: any value of any parameter, through validate-all, probe,
monitor, start and stop in-process with every command intercepted, gives a clean answer
(rigs/fuzz.py runs the campaign; here: a valid configuration and what the agent may run)."""

import os

import pytest

from rigs import fuzz


def valid_configuration(sandbox, monkeypatch):
    data = os.path.join(sandbox.root, "mfs")
    os.makedirs(data, exist_ok=True)
    config = os.path.join(sandbox.root, "mfsmaster.cfg")
    with open(config, "w") as f:
        f.write(f"DATA_PATH = {data}\nMATOCL_LISTEN_HOST = 127.0.0.1\n"
                "MATOCL_LISTEN_PORT = 1\n")  # nothing listens on port 1
    return {"config": config, "metadata_sources": sandbox.export}


# the commands it may run, with the only options it may pass them; the parameters that
# name a program by design: their value may stand as argv[0]
RULES = fuzz.Rules(valid_configuration,
                   {"mfsmaster": {"-c", "-a"}, "mfsmetadump": set(),
                    "crm_attribute": fuzz.CRM_ATTRIBUTE_OPTIONS},
                   program_params={"mfsmaster", "mfsmetadump"})


@pytest.mark.parametrize("param", fuzz.parameters("mfsmaster"))
def test_any_value_of_any_parameter_gives_a_clean_answer(param, monkeypatch, tmp_path_factory):
    fuzz.any_value_gives_a_clean_answer("mfsmaster", RULES, param, monkeypatch, tmp_path_factory)
