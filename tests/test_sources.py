"""The sources file: connectors and webhooks built from TOML, secrets from the environment."""

from __future__ import annotations

import pytest

from core.settings import PROJECT_ROOT
from core.worker import configured_sources
from ingestion.errors import SourceConfigError
from ingestion.sources import SOURCE_TYPES, load_sources


class ConfigurableSource:
    """A connector with the constructor shape the loader expects."""

    kind = "sms"

    def __init__(self, name: str, token: str, interval_seconds: int = 60, page_size: int = 50):
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.name, self.token = name, token
        self.interval_seconds, self.page_size = interval_seconds, page_size

    def fetch(self, cursor):
        return [], cursor


@pytest.fixture
def write(settings, monkeypatch):
    monkeypatch.setitem(SOURCE_TYPES, "fake", "test_sources:ConfigurableSource")

    def write(text: str):
        settings.sources_file.write_text(text)
        return settings

    return write


def test_a_missing_file_configures_nothing(settings):
    assert load_sources(settings).sources == [] and load_sources(settings).webhooks == []


def test_sources_and_webhooks_are_built_with_secrets_from_the_environment(write, monkeypatch):
    monkeypatch.setenv("FAKE_TOKEN", "s3cret")
    monkeypatch.setenv("HOOK_SECRET", "hook-s3cret")
    settings = write(
        '[[source]]\nname = "texts"\ntype = "fake"\ntoken_env = "FAKE_TOKEN"\n'
        "interval_seconds = 15\npage_size = 10\n\n"
        '[[source]]\nname = "texts-2"\ntype = "fake"\ntoken_env = "FAKE_TOKEN"\n\n'
        '[[webhook]]\nname = "forms"\ntype = "signed_json"\nsecret_env = "HOOK_SECRET"\n'
    )
    config = load_sources(settings)
    first, second = config.sources
    assert (first.name, first.token, first.interval_seconds, first.page_size) == (
        "texts", "s3cret", 15, 10
    )  # fmt: skip
    assert second.interval_seconds == 60 and second.page_size == 50
    (hook,) = config.webhooks
    assert (hook.name, hook.type, hook.options) == (
        "forms",
        "signed_json",
        {"secret": "hook-s3cret"},
    )
    names = [s.name for s in configured_sources(settings, demo=True)]
    assert names == ["texts", "texts-2", "demo"]


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ('[[source]]\nname = "x"\ntype = "fax"\n', "type = 'fax': use one of"),
        ('[[source]]\nname = "Bad Name"\ntype = "fake"\n', "name = 'Bad Name'"),
        ('[[source]]\nname = "x"\ntype = "fake"\ntoken_env = "NOT_SET_ANYWHERE"\n',
         "token_env = 'NOT_SET_ANYWHERE': set that environment variable"),
        ('[[source]]\nname = "x"\ntype = "fake"\ntoken = "t"\npage_sise = 3\n',
         "unknown option(s) ['page_sise'] for type 'fake'; allowed: ['interval_seconds', "
         "'page_size', 'token']"),
        ('[[source]]\nname = "x"\ntype = "fake"\ntoken = "t"\npage_size = 0\n',
         "(x): page_size must be at least 1"),
        ('[[source]]\nname = "x"\ntype = "fake"\n', "(x): "),
        ('[[source]]\nname = "x"\ntype = "fake"\ntoken = "t"\n'
         '[[webhook]]\nname = "x"\ntype = "twilio"\n', "repeated: ['x']"),
        ('[[webhook]]\nname = "x"\ntype = "smtp"\n', "[[webhook]] #1 (x): type = 'smtp'"),
        ("[[source]\nname = 1", "not valid TOML"),
    ],
)  # fmt: skip
def test_mistakes_are_reported_with_the_table_and_the_fix(write, text, complaint):
    with pytest.raises(SourceConfigError) as error:
        load_sources(write(text))
    assert complaint in str(error.value)
    assert "sources.toml" in str(error.value)


def test_a_connectors_own_default_interval_is_kept(write, monkeypatch):
    monkeypatch.setitem(SOURCE_TYPES, "slow", "test_sources:SlowSource")
    settings = write('[[source]]\nname = "slow"\ntype = "slow"\ntoken = "t"\n')
    assert load_sources(settings).sources[0].interval_seconds == 900


class SlowSource(ConfigurableSource):
    def __init__(self, name: str, token: str, interval_seconds: int = 900):
        super().__init__(name, token, interval_seconds)


def test_the_example_file_is_valid(settings, monkeypatch):
    for variable in ("PULSE_IMAP_PASSWORD", "PULSE_TWILIO_ACCOUNT_SID", "PULSE_TWILIO_AUTH_TOKEN",
                     "PULSE_MASTODON_TOKEN", "PULSE_FACEBOOK_PAGE_TOKEN",
                     "PULSE_BLUESKY_APP_PASSWORD", "PULSE_FORM_SECRET"):  # fmt: skip
        monkeypatch.setenv(variable, "secret")
    config = load_sources(settings, PROJECT_ROOT / "sources.example.toml")
    assert {type(s).__name__ for s in config.sources} == {
        "ImapSource", "TwilioSource", "MastodonSource", "FeedSource", "FacebookPageSource",
        "BlueskySource",
    }  # fmt: skip
    assert {(w.name, w.type) for w in config.webhooks} == {
        ("sms", "twilio"), ("contact-form", "signed_json")
    }  # fmt: skip
