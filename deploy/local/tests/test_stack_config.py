"""StackConfig: ports and the state directory from the environment, errors naming variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from milepost_devstack.config import Ports, StackConfig
from milepost_devstack.errors import ConfigError


class TestPorts:
    def test_defaults_are_the_documented_ones(self) -> None:
        ports = Ports.from_environ({})

        assert (ports.gateway, ports.api, ports.admin, ports.ingest) == (8080, 8001, 8002, 8003)

    def test_app_port_variables_are_the_apps_own(self) -> None:
        ports = Ports.from_environ({"MILEPOST_API__PORT": "9001", "MILEPOST_GATEWAY_PORT": "9080"})

        assert (ports.api, ports.gateway) == (9001, 9080)

    @pytest.mark.parametrize("raw", ["http", "0", "70000", "-1"])
    def test_bad_port_names_the_variable(self, raw: str) -> None:
        with pytest.raises(ConfigError, match="MILEPOST_REDIS_PORT"):
            Ports.from_environ({"MILEPOST_REDIS_PORT": raw})

    def test_two_components_on_one_port_are_refused(self) -> None:
        with pytest.raises(ConfigError, match="MILEPOST_ADMIN__PORT"):
            Ports.from_environ({"MILEPOST_ADMIN__PORT": "8001"})

    def test_free_ports_are_distinct(self) -> None:
        Ports.free().check_distinct()


class TestStateDir:
    def test_configured_directory_wins(self, tmp_path: Path) -> None:
        config = StackConfig.from_environ({"MILEPOST_STATE_DIR": str(tmp_path)})

        assert config.state_dir == tmp_path
        assert config.secrets_file == tmp_path / "secrets.env"

    def test_default_is_outside_the_checkout(self) -> None:
        checkout = Path(__file__).resolve().parents[3]

        state_dir = StackConfig.from_environ({}).state_dir

        assert checkout not in state_dir.parents

    def test_environment_defaults_to_local(self) -> None:
        assert StackConfig.from_environ({}).environment == "local"
