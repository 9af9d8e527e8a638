"""Settings from a function's environment: typed, bounded, and every template value accepted."""

from __future__ import annotations

import pytest

from boxwatch.settings import Settings
from boxwatch_infra.aws.template import Template


def test_environment_strings_become_typed_values() -> None:
    # Given an environment as Lambda gives it (strings only), with a variable that is no setting
    s = Settings.from_env({"NEIGHBOUR_RADIUS_M": "250", "NEIGHBOUR_WINDOW_S": "600", "PATH": "/bin"})
    # Then numbers are numbers of the field's type, the rest keep their defaults
    assert s.neighbour_radius_m == 250.0 and isinstance(s.neighbour_radius_m, float)
    assert s.neighbour_window_s == 600 and isinstance(s.neighbour_window_s, int)
    assert s.offline_watch_s == Settings().offline_watch_s


@pytest.mark.parametrize(("env", "says"), [
    ({"NEIGHBOUR_WINDOW_S": "0"}, "neighbour_window_s: must be > 0"),
    ({"NEIGHBOUR_WINDOW_S": "1.5"}, "neighbour_window_s: a whole number"),
    ({"NEIGHBOUR_RADIUS_M": "far"}, "neighbour_radius_m: a number"),
    ({"NEIGHBOUR_RADIUS_M": "nan"}, "neighbour_radius_m: a finite number"),
    ({"STORM_SHARE": "1.5"}, "storm_share: must be <= 1"),
    ({"STORM_MIN_BOXES": "1"}, "storm_min_boxes: must be >= 2"),
])
def test_a_bad_value_names_its_setting(env: dict[str, str], says: str) -> None:
    # When a deployment sets a value outside its bounds, Then the error names the setting
    with pytest.raises(ValueError, match=says):
        Settings.from_env(env)


def test_every_function_environment_in_the_template_is_accepted() -> None:
    # Given each function's environment as the template resolves it
    for logical, spec in Template().functions.items():
        # Then it makes valid settings (a bad default would fail every cold start)
        assert isinstance(Settings.from_env(spec.environment), Settings), logical


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.neighbour_radius_m = 1.0  # type: ignore[misc]
