"""The worker's secrets: from its environment first, then its NAME=value secrets file."""

from __future__ import annotations

from pathlib import Path

import pytest

from towline.activities import secrets
from towline.errors import ToolError


@pytest.fixture
def secrets_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "secrets.env"
    monkeypatch.setenv(secrets.FILE_ENV, str(path))
    for name in ("TOWLINE_SECRET_API", "TOWLINE_SECRET_BOTH"):
        monkeypatch.delenv(name, raising=False)
    return path


def test_the_file_is_dotenv_shaped() -> None:
    text = "\n".join(
        [
            "# comment",
            "",
            "PLAIN=abc=def",
            "export EXPORTED = value with spaces ",
            'DOUBLE="quoted # not a comment"',
            "SINGLE='x'",
            "EMPTY=",
            "HALF='unbalanced",
        ]
    )
    assert secrets.parse(text, source="f") == {
        "PLAIN": "abc=def",
        "EXPORTED": "value with spaces",
        "DOUBLE": "quoted # not a comment",
        "SINGLE": "x",
        "EMPTY": "",
        "HALF": "'unbalanced",
    }


def test_a_bad_line_names_its_number_but_not_its_content() -> None:
    with pytest.raises(ToolError) as e:
        secrets.parse("A=1\nnot-a-name=hunter2\n", source="/etc/towline/secrets")

    assert e.value.message == "secrets file /etc/towline/secrets, line 2: expected NAME=value"
    assert "hunter2" not in e.value.message


def test_the_environment_wins_over_the_file(
    secrets_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets_file.write_text("API=from-file\nBOTH=from-file\n")
    monkeypatch.setenv("TOWLINE_SECRET_BOTH", "from-env")

    assert secrets.lookup("API") == "from-file"
    assert secrets.lookup("BOTH") == "from-env"
    assert secrets.lookup("NOPE") is None
    assert {"from-file", "from-env"} <= set(secrets.values())


def test_the_file_is_read_on_each_use(secrets_file: Path) -> None:
    secrets_file.write_text("API=old\n")
    assert secrets.lookup("API") == "old"
    secrets_file.write_text("API=rotated\n")
    assert secrets.lookup("API") == "rotated"


def test_a_missing_file_is_an_error_naming_it(secrets_file: Path) -> None:
    with pytest.raises(ToolError) as e:
        secrets.lookup("API")

    assert e.value.category == "system"
    assert e.value.message.startswith(f"cannot read the secrets file {secrets_file}")
