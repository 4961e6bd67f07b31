from pathlib import Path

import pytest

from pipelines.lib.settings import DEMO_MAPPINGS_DIR, Settings, SettingsError


def test_defaults_work_from_a_clone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({})
    assert s.home == tmp_path / "data"
    assert s.landing == tmp_path / "data" / "landing"
    assert s.warehouse_db == tmp_path / "data" / "warehouse" / "warehouse.duckdb"
    assert s.serving == tmp_path / "data" / "serving"
    assert s.reports == tmp_path / "data" / "reports"
    assert s.timezone == "Asia/Shanghai"
    assert s.currency == "CNY"
    assert s.mappings_dir == DEMO_MAPPINGS_DIR
    assert s.supernode_threshold == 20
    s.ensure_dirs()
    for sub in ("landing", "warehouse", "serving", "reports"):
        assert (tmp_path / "data" / sub).is_dir()


def test_environment_overrides(tmp_path):
    s = Settings.from_env(
        {
            "CRM_HOME": str(tmp_path / "home"),
            "CRM_TIMEZONE": "Europe/Berlin",
            "CRM_CURRENCY": "eur",
            "CRM_MAPPINGS_DIR": str(tmp_path / "maps"),
            "CRM_LANDING_DIR": str(tmp_path / "drop"),
            "CRM_SUPERNODE_THRESHOLD": "5",
        }
    )
    assert s.home == tmp_path / "home"
    assert s.timezone == "Europe/Berlin"
    assert s.currency == "EUR"
    assert s.mappings_dir == tmp_path / "maps"
    assert s.landing == tmp_path / "drop"
    assert s.supernode_threshold == 5


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"CRM_TIMEZONE": "Mars/Olympus"}, "CRM_TIMEZONE"),
        ({"CRM_CURRENCY": "yuan"}, "CRM_CURRENCY"),
        ({"CRM_SUPERNODE_THRESHOLD": "many"}, "CRM_SUPERNODE_THRESHOLD"),
    ],
)
def test_bad_settings_name_the_variable(env, needle):
    with pytest.raises(SettingsError, match=needle):
        Settings.from_env(env)


def test_demo_mappings_folder_is_in_the_repo():
    assert DEMO_MAPPINGS_DIR.is_dir()
    assert Path(DEMO_MAPPINGS_DIR).parts[-3:] == ("ingest", "mappings", "demo")
