"""gbsynth.common.jit: cached numba code goes when a source it depends on changes."""

from gbsynth.common.jit import drop_stale_jit_cache


def test_cache_is_dropped_only_when_a_source_changed(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    (package / "__pycache__").mkdir(parents=True)
    module = package / "loop.py"
    module.write_text("x = 1\n")
    other = tmp_path / "constants.py"  # outside the package, inlined by it
    other.write_text("Y = 2\n")
    numba_dir = tmp_path / "numba"
    mirrored = numba_dir / "pkg"
    mirrored.mkdir(parents=True)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(numba_dir))

    def cache_files():
        return [
            package / "__pycache__" / "loop.run-10.py311.nbi",
            mirrored / "loop.run-10.py311.1.nbc",
        ]

    def make_cache():
        for path in cache_files():
            path.write_bytes(b"code")

    make_cache()
    drop_stale_jit_cache(package, [module, other], "stamp")  # first import: no stamp yet
    assert not any(p.exists() for p in cache_files())
    make_cache()
    drop_stale_jit_cache(package, [module, other], "stamp")  # nothing changed
    assert all(p.exists() for p in cache_files())
    other.write_text("Y = 3\n")
    drop_stale_jit_cache(package, [module, other], "stamp")
    assert not any(p.exists() for p in cache_files())
