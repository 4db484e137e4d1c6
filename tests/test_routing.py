"""Alert routing: recipient groups by kind and topic, the default recipients, bad files."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from alerts.routing import DEFAULT_GROUP, RecipientGroup, Routes, load_routes, parse_routes
from core.settings import PROJECT_ROOT


def names(groups: list[RecipientGroup]) -> list[str]:
    return [group.name for group in groups]


def test_the_example_file_loads_and_routes_by_kind_and_topic(settings):
    routes = load_routes(settings, PROJECT_ROOT / "alerts.example.toml")
    assert names(list(routes.groups)) == [
        "communications",
        "transportation",
        "food service",
        "safety",
        "cabinet",
        "it",
    ]
    bus = routes.route("spike", 17, "transportation", "Bus routes")
    assert names(bus) == ["communications", "transportation"]
    lunch = routes.route("spike", 4, None, "Cafeteria lines")  # a label word, no seed
    assert names(lunch) == ["communications", "food service"]
    assert names(routes.route("emerging", 4, None, "Cafeteria lines")) == ["communications"]
    assert names(routes.route("emerging", None)) == ["communications"]  # a group of messages
    risk = routes.route("risk", None)
    assert names(risk) == ["safety", "cabinet"]
    assert [group.authorised for group in risk] == [True, False]
    assert names(routes.route("source_down", None)) == ["it"]
    assert routes.default is None  # PULSE_ALERT_RECIPIENTS is empty


def test_without_a_file_every_alert_goes_to_the_alert_recipients(settings, tmp_path):
    settings = settings.model_copy(
        update={"alert_recipients": " a@district.example, b@district.example "}
    )
    routes = load_routes(settings, tmp_path / "missing.toml")
    for kind, topic in (("spike", 3), ("risk", None), ("source_down", None)):
        [group] = routes.route(kind, topic)
        assert group.name == DEFAULT_GROUP
        assert group.recipients == ("a@district.example", "b@district.example")
        assert not group.authorised  # risk alerts to the default recipients are link-only
    assert routes.anyone


def test_nobody_at_all_is_allowed(settings, tmp_path):
    routes = load_routes(settings, tmp_path / "missing.toml")
    assert routes.route("spike", 3) == [] and not routes.anyone


def test_alerts_no_group_takes_go_to_the_alert_recipients(settings, tmp_path):
    path = tmp_path / "alerts.toml"
    path.write_text('[[group]]\nname = "buses"\nrecipients = ["d@x.org"]\ntopics = [7]\n')
    settings = settings.model_copy(update={"alert_recipients": "all@x.org"})
    routes = load_routes(settings, path)
    assert names(routes.route("spike", 7)) == ["buses"]  # a topic id
    assert names(routes.route("spike", 8)) == [DEFAULT_GROUP]


def test_label_words_match_whole_words_only():
    group = RecipientGroup("g", ("g@x.org",), topics=("bus",))
    assert group.takes("spike", 1, None, "Late bus, again")
    assert not group.takes("spike", 1, None, "Business office")
    assert not group.takes("spike", None)


def test_a_relative_routes_file_is_under_the_project_folder(settings):
    settings = settings.model_copy(update={"alert_routes_file": Path("alerts.example.toml")})
    assert len(load_routes(settings).groups) == 6


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ('[[group]]\nrecipients = ["a@x.org"]\n', r"\[\[group\]\] #1 needs a name"),
        ('[[group]]\nname = "g"\n', "'g': recipients must be a non-empty list"),
        ('[[group]]\nname = "g"\nrecipients = ["Al <a@x.org>"]\n', "not email addresses"),
        ('[[group]]\nname = "g"\nrecipients = ["a@x.org"]\nkinds = ["spikes"]\n', "kinds"),
        ('[[group]]\nname = "g"\nrecipients = ["a@x.org"]\ntopics = "bus"\n', "topics must"),
        ('[[group]]\nname = "g"\nrecipients = ["a@x.org"]\nauthorized = true\n', "unknown keys"),
        ('[[group]]\nname = "g"\nrecipients = ["a@x.org"]\nauthorised = "yes"\n', "true or"),
        ('[[group]]\nname = "g"\nrecipients = ["a@x.org"]\n' * 2, "must be unique"),
        ('recipients = ["a@x.org"]\n', "only \\[\\[group\\]\\] tables"),
    ],
)
def test_a_bad_routes_document_is_a_clear_error(document, message):
    with pytest.raises(ValueError, match=message):
        parse_routes(tomllib.loads(document))


def test_a_bad_file_names_the_file(settings, tmp_path):
    path = tmp_path / "alerts.toml"
    path.write_text("[[group]\n")
    with pytest.raises(ValueError, match=rf"{path}: not valid TOML"):
        load_routes(settings, path)
    path.write_text('[[group]]\nname = "g"\nrecipients = ["oops"]\n')
    with pytest.raises(ValueError, match=rf"{path}: \[\[group\]\] 'g': not email addresses"):
        load_routes(settings, path)


def test_bad_default_recipients_name_the_setting(settings, tmp_path):
    settings = settings.model_copy(update={"alert_recipients": "ok@x.org, not-an-address"})
    with pytest.raises(ValueError, match="PULSE_ALERT_RECIPIENTS: not email addresses"):
        load_routes(settings, tmp_path / "missing.toml")


def test_routes_without_groups_route_nothing():
    assert Routes().route("risk", None) == []
