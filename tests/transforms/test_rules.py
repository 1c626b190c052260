"""The rules file: loading, profiles, refusals with the key named, and the installed rules tables."""
from __future__ import annotations

import copy
import datetime as dt
import re

import duckdb
import pytest
import yaml

from tests.helpers.models import compiled_models as discover_models
from b12lab.rules.rules_file import DEFAULT_RULES_PATH, SETTING_KINDS, RulesError, install_rules, load_rules

AS_OF = dt.date(2025, 6, 30)


@pytest.fixture(scope="module")
def document():
    return yaml.safe_load(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))


def write(tmp_path, document):
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def test_default_profile_is_the_seed():
    rules = load_rules()
    assert rules.profile == "seed"
    assert rules.version
    assert rules["b12_deficient_below_pmol_l"] == 150.0
    assert rules["b12_deficient_below_pg_ml"] == 203.0
    assert rules["b12_borderline_max_pmol_l"] == 258.0
    assert rules["b12_borderline_max_pg_ml"] == 350.0
    assert rules["lookback_days"] == 730
    assert all(rules[name] is True for name in SETTING_KINDS if name.endswith("_enabled"))


def test_every_setting_has_a_description_and_a_source(document):
    assert set(document["settings"]) == set(SETTING_KINDS)
    for name, entry in document["settings"].items():
        assert entry["description"].strip() and entry["source"].strip(), name


def test_every_setting_is_used_by_a_model():
    sql = " ".join(model.sql for model in discover_models())
    unused = [name for name in SETTING_KINDS if not re.search(rf"\b{name}\b", sql)]
    assert unused == []


def test_nice_profile():
    rules = load_rules(profile="nice_ng239")
    assert (rules["b12_deficient_below_pmol_l"], rules["b12_deficient_below_pg_ml"]) == (133.0, 180.0)
    assert (rules["b12_borderline_max_pmol_l"], rules["b12_borderline_max_pg_ml"]) == (258.0, 350.0)
    assert (rules["holotc_deficient_below_pmol_l"], rules["holotc_indeterminate_max_pmol_l"]) == (25.0, 70.0)
    assert rules["reason_pa_overdue_annual_b12_enabled"] is False
    assert rules["reason_treated_below_target_enabled"] is False
    assert rules["reason_pa_no_post_treatment_recheck_enabled"] is True
    assert "NICE NG239" in rules.sources["reason_pa_overdue_annual_b12_enabled"]


def test_bsh_profile():
    rules = load_rules(profile="bsh_2014")
    assert (rules["b12_deficient_below_pmol_l"], rules["b12_deficient_below_pg_ml"]) == (148.0, 200.0)
    assert rules["mma_use_lab_upper_limit"] is True
    assert rules["homocysteine_use_lab_upper_limit"] is True
    assert "BSH 2014" in rules.sources["b12_deficient_below_pmol_l"]


def _set(document, dotted, value):
    *parents, last = dotted.split(".")
    node = document
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


_DELETE = object()

# (what is wrong, dotted key to change, new value, key named in the error, words in the error)
REFUSALS = [
    ("unknown top-level key", "colour", "blue", "colour", "unknown key"),
    ("unknown setting", "settings.b12_bogus", {"value": 1, "description": "x", "source": "y"},
     "settings.b12_bogus", "unknown key"),
    ("unknown field of a setting", "settings.lookback_days.colour", "blue", "settings.lookback_days.colour",
     "unknown key"),
    ("unknown setting inside a profile", "profiles.nice_ng239.settings.b12_bogus", {"value": 1, "source": "y"},
     "profiles.nice_ng239.settings.b12_bogus", "unknown key"),
    ("unknown field inside a profile", "profiles.bsh_2014.colour", "blue", "profiles.bsh_2014.colour",
     "unknown key"),
    ("unknown value set", "codes.statins", {"description": "x", "source": "y", "codes": {"ATC": ["C10AA"]}},
     "codes.statins", "unknown key"),
    ("unknown code system", "codes.pa_diagnosis.codes.ICD-11", ["3A00.0"], "codes.pa_diagnosis.codes.ICD-11",
     "unknown key"),
    ("missing setting", "settings.lookback_days", _DELETE, "settings.lookback_days", "missing value"),
    ("missing value", "settings.lookback_days.value", None, "settings.lookback_days.value", "missing value"),
    ("missing source", "settings.lookback_days.source", _DELETE, "settings.lookback_days.source", "missing value"),
    ("missing source of an override", "profiles.nice_ng239.settings.b12_deficient_below_pmol_l.source", _DELETE,
     "profiles.nice_ng239.settings.b12_deficient_below_pmol_l.source", "missing value"),
    ("missing value of an override", "profiles.nice_ng239.settings.b12_deficient_below_pmol_l.value", None,
     "profiles.nice_ng239.settings.b12_deficient_below_pmol_l.value", "missing value"),
    ("missing code list", "codes.folic_acid", _DELETE, "codes.folic_acid", "missing value"),
    ("missing version", "version", _DELETE, "version", "missing value"),
    ("days as text", "settings.lookback_days.value", "730", "settings.lookback_days.value", "wrong type"),
    ("days as a fraction", "settings.lookback_days.value", 1.5, "settings.lookback_days.value", "wrong type"),
    ("switch as text", "settings.reason_borderline_no_mma_enabled.value", "yes",
     "settings.reason_borderline_no_mma_enabled.value", "wrong type"),
    ("threshold as a switch", "settings.b12_deficient_below_pmol_l.value", True,
     "settings.b12_deficient_below_pmol_l.value", "wrong type"),
    ("override of the wrong type", "profiles.nice_ng239.settings.reason_pa_overdue_annual_b12_enabled.value", 0,
     "profiles.nice_ng239.settings.reason_pa_overdue_annual_b12_enabled.value", "wrong type"),
    ("unquoted numeric code", "codes.pa_diagnosis.codes.SNOMED-CT", [84027009],
     "codes.pa_diagnosis.codes.SNOMED-CT", "wrong type"),
    ("negative window", "settings.lookback_days.value", -1, "settings.lookback_days.value", "impossible value"),
    ("zero threshold", "settings.mma_elevated_above_umol_l.value", 0, "settings.mma_elevated_above_umol_l.value",
     "impossible value"),
    ("borderline bound below the deficient bound", "settings.b12_borderline_max_pmol_l.value", 100.0,
     "settings.b12_borderline_max_pmol_l", "impossible range"),
    ("borderline bound below the deficient bound in a profile",
     "profiles.bsh_2014.settings.b12_deficient_below_pg_ml.value", 400.0,
     "profiles.bsh_2014.settings.b12_deficient_below_pg_ml", "impossible range"),
    ("holoTC indeterminate bound below deficient", "settings.holotc_indeterminate_max_pmol_l.value", 20.0,
     "settings.holotc_indeterminate_max_pmol_l", "impossible range"),
    ("MMA window end before start", "settings.mma_window_end_offset_days.value", -31,
     "settings.mma_window_end_offset_days", "impossible range"),
    ("recheck window end before start", "settings.pa_recheck_window_end_days.value", 60,
     "settings.pa_recheck_window_end_days", "impossible range"),
    ("unknown default profile", "default_profile", "who_2020", "default_profile", "unknown profile"),
]


@pytest.mark.parametrize("what, dotted, value, key, words", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_name_the_key(tmp_path, document, what, dotted, value, key, words):
    broken = copy.deepcopy(document)
    _set(broken, dotted, value)
    with pytest.raises(RulesError) as refused:
        load_rules(write(tmp_path, broken))
    message = str(refused.value)
    assert f": {key}: " in message
    assert words in message
    assert "\n" not in message


def test_unknown_profile_is_refused():
    with pytest.raises(RulesError, match=r"profile: unknown profile 'who_2020' \(known: bsh_2014, nice_ng239, seed\)"):
        load_rules(profile="who_2020")


def test_unreadable_and_invalid_files_are_refused(tmp_path):
    with pytest.raises(RulesError, match="cannot read rules file"):
        load_rules(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("settings: [unclosed\n", encoding="utf-8")
    with pytest.raises(RulesError, match="not valid YAML at line"):
        load_rules(bad)


def test_install_rules_makes_one_typed_row_and_the_code_lists():
    rules = load_rules(profile="nice_ng239")
    con = duckdb.connect()
    install_rules(con, rules, AS_OF)
    columns = {name: kind for name, kind, *_ in con.execute("describe rules_settings").fetchall()}
    assert list(columns) == [*SETTING_KINDS, "as_of", "rules_version", "rules_profile"]
    assert columns["lookback_days"] == "INTEGER"
    assert columns["b12_deficient_below_pg_ml"] == "DOUBLE"
    assert columns["reason_treated_below_target_enabled"] == "BOOLEAN"
    assert columns["as_of"] == "DATE"
    assert con.execute("select count(*) from rules_settings").fetchone() == (1,)
    assert con.execute(
        "select b12_deficient_below_pg_ml, reason_pa_overdue_annual_b12_enabled, as_of, rules_profile "
        "from rules_settings").fetchone() == (180.0, False, AS_OF, "nice_ng239")
    codes = set(con.execute("select value_set, code_system, code from rules_codes").fetchall())
    assert {("pa_diagnosis", "ICD-10", "D51.0"), ("pa_diagnosis", "ICD-9", "281.0"),
            ("pa_diagnosis", "SNOMED-CT", "84027009"), ("b12_drug", "ATC", "B03BA"),
            ("folic_acid", "ATC", "B03BB01"), ("folic_acid", "drug_name", "folic acid"),
            ("b12_mass_unit", "unit", "pg/mL"), ("b12_mass_unit", "unit", "ng/L")} <= codes


def test_install_rules_binds_values(tmp_path, document):
    hostile = copy.deepcopy(document)
    hostile["version"] = "1'); drop table rules_codes; --"
    rules = load_rules(write(tmp_path, hostile))
    con = duckdb.connect()
    install_rules(con, rules, AS_OF)
    assert con.execute("select rules_version from rules_settings").fetchone() == (hostile["version"],)
    assert con.execute("select count(*) from rules_codes").fetchone()[0] > 0
