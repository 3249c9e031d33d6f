"""What the installed extension says it was built from, which the benchmark's results file records:
the hash of src/ and include/ (CMakeLists.txt) is this checkout's, and scripts/which-commit computes it
the same way. Needs neither torch nor a GPU."""
import hashlib
import pathlib
import subprocess

import flashattn

ROOT = pathlib.Path(__file__).resolve().parents[2]


def checkout_sha256():
    """SHA-256 of the sha256sum lines ("<hash>  <path>\\n", paths in byte order) of src/ and include/."""
    files = sorted(p.relative_to(ROOT).as_posix() for d in ("src", "include") for p in (ROOT / d).rglob("*")
                   if p.is_file())
    lines = "".join(f"{hashlib.sha256((ROOT / f).read_bytes()).hexdigest()}  {f}\n" for f in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def test_source_hash_is_this_checkouts():
    assert flashattn._C.__source_sha256__ == checkout_sha256(), (
        "the installed extension was built from other sources: scripts/python-install after editing src/ or include/")


def test_which_commit_hashes_the_same_way():
    out = subprocess.run([str(ROOT / "scripts" / "which-commit"), "--tree"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == checkout_sha256()
