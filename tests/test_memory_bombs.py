"""Memory bombs end in a clean error in bounded memory (issue #29 item 8): a small file whose sizes
claim gigabytes (a PNG chunk, a deflated .npz entry) is refused from those sizes, checked against
the file, before anything of that size is allocated. Each load runs in its own process, whose
peak resident memory (wait4's ru_maxrss) must stay under the 400 MiB the service runs with."""

import sys

import fuzzing as F
import pytest

from mimika import create_model

PEAK_MIB = 400  # what one upload may take in the service
LOAD_IMAGE = ("from mimika.prepare.images import load_image\n"
              "load_image(sys.argv[1], keep_color=True)")
LOAD_MODEL = ("from mimika.common.container import read_container\n"
              "read_container(sys.argv[1], 'mimika-model')")


def load_in_child(code: str, path) -> dict:
    """Run `code` (sys.argv[1] is `path`) in a fresh process: a MimikaError is its one line on stderr,
    exit 2; anything else a traceback."""
    script = ("import sys\nfrom mimika import MimikaError\ntry:\n" + "".join(f"    {line}\n" for line in code.split("\n"))
              + "except MimikaError as e:\n    print(e, file=sys.stderr)\n    sys.exit(2)\n")
    return F.run_process([sys.executable, "-c", script, str(path)], timeout=120, mem_limit=6 * F.GiB)


def assert_clean_and_small(run: dict, path, problem: str) -> None:
    lines = run["stderr"].strip().splitlines()
    assert run["rc"] == 2 and len(lines) == 1 and lines[0].startswith(f"{path}: "), run
    assert run["peak_mb"] < PEAK_MIB, f"{path.name}: peak {run['peak_mb']} MiB, {run['seconds']} s: {lines[0]}"
    assert problem in lines[0], lines


@pytest.fixture(scope="module")
def noise_png() -> bytes:
    """A 0.5 MB PNG (420 x 420 colour noise, 65 IDAT chunks)."""
    import numpy as np
    return F._cv_encode(".png", np.random.default_rng(0).integers(0, 256, (420, 420, 3), dtype=np.uint8))


@pytest.mark.parametrize("nth, length", [(0, 0x7FFFFFFF), (1, 0xFFFFFFF0), (64, 0x40000000)])
def test_a_png_chunk_that_claims_gigabytes_is_refused_in_bounded_memory(tmp_path, noise_png, nth, length):
    path = tmp_path / "claims.png"
    path.write_bytes(F.png_chunk_claiming(noise_png, b"IDAT", length, nth=nth))
    assert len(path.read_bytes()) < 600_000
    assert_clean_and_small(load_in_child(LOAD_IMAGE, path), path, "PNG chunk 'IDAT' at byte")


def test_the_same_png_intact_still_loads(tmp_path, noise_png):
    path = tmp_path / "intact.png"
    path.write_bytes(noise_png)
    run = load_in_child(LOAD_IMAGE, path)
    assert run["rc"] == 0 and not run["stderr"].strip(), run


@pytest.fixture(scope="module")
def seed_npz(tmp_path_factory):
    return create_model("seed", seed=0).save(tmp_path_factory.mktemp("npz") / "m.npz")


@pytest.mark.parametrize("mib", [300, 1200])
def test_an_npz_entry_that_inflates_to_gigabytes_is_refused_in_bounded_memory(tmp_path, seed_npz, mib):
    path = tmp_path / f"bomb{mib}.npz"
    path.write_bytes(F.with_bomb_entry(seed_npz.read_bytes(), mib << 20))
    assert path.stat().st_size < seed_npz.stat().st_size + (2 << 20)  # a small file
    assert_clean_and_small(load_in_child(LOAD_MODEL, path), path, "decompression bomb")


def test_many_small_bombs_are_one_big_one(tmp_path, seed_npz):
    """Each entry may inflate a little beyond the ratio; all of them together may not."""
    data = seed_npz.read_bytes()
    for i in range(24):
        data = F.with_bomb_entry(data, 1 << 20, name=f"param/extra{i}.npy".encode())
    path = tmp_path / "many.npz"
    path.write_bytes(data)
    assert_clean_and_small(load_in_child(LOAD_MODEL, path), path, "decompression bomb")


def test_a_model_file_loads_in_bounded_memory(seed_npz):
    run = load_in_child(LOAD_MODEL, seed_npz)
    assert run["rc"] == 0 and run["peak_mb"] < PEAK_MIB, run


def test_a_childs_peak_is_its_own_not_the_forking_processs():
    """Linux keeps a process's high-water mark across fork and exec: without the harness's launcher
    every child of a large test process would report at least that process's size."""
    import numpy as np
    held = np.ones(PEAK_MIB << 20, np.uint8)  # this process now holds more than the bound
    run = F.run_process([sys.executable, "-c", "pass"], timeout=60)
    del held
    assert run["rc"] == 0 and run["peak_mb"] < PEAK_MIB / 4, run
