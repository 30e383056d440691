"""The secret guard: obvious secrets are found with their line, run-time lookups are not."""
from __future__ import annotations

import pytest

from quantlab.hub.secrets import find_secrets


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ('KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz123456"', "sk-"),
        ("aws = 'AKIAIOSFODNN7EXAMPLE'", "AWS"),
        ("gh = 'ghp_abcdefghijklmnopqrstuvwxyz0123456789'", "GitHub"),
        ("slack = 'xoxb-123456789012-abcdefghij'", "Slack"),
        ("-----BEGIN RSA PRIVATE KEY-----", "private key"),
        ("password = 'hunter22'", "password"),
        ("api_token = 'abc123def456'", "api_token"),
        ("cfg['secret'] = 'abcd1234'", "secret"),
        ("connect(password='hunter22')", "password"),
        ("opts = {'token': 'tok-12345'}", "token"),
        ("def signals(data, api_key='k-123456'):\n    return data", "api_key"),
        ("self.client_secret: str = 'zzzz9999'", "client_secret"),
    ],
)
def test_found_with_line(line, kind):
    code = "import os\n\n" + line + "\n"
    found = find_secrets(code)
    assert [f.line for f in found] == [3], found
    assert kind.lower() in found[0].kind.lower()
    assert "hunter22" not in str(found[0]) and "abcdefghijklmnop" not in str(found[0])


@pytest.mark.parametrize(
    "line",
    [
        "password = os.environ['PASSWORD']",
        "token = ''",
        "api_key = '<your key>'",
        "password = 'changeme'",
        "token = '...'",
        "token_window = 5",
        "author = 'me'",
        "mode = 'sk-short'",
        "skew = data.close.skew()",
        "desc = 'uses a password'",
    ],
)
def test_not_flagged(line):
    assert find_secrets("import os\n" + line + "\n") == []


def test_syntax_errors_do_not_crash():
    assert [f.line for f in find_secrets("def f(:\nx = 'AKIAIOSFODNN7EXAMPLE'\n")] == [2]
