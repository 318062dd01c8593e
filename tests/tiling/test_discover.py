"""Finding slides, naming stores, sharding slide lists and reading mpp overrides."""

from pathlib import Path

import pytest

from tiling.discover import (
    describe_ignored,
    discover_slides,
    override_for,
    read_mpp_overrides,
    select_shard,
    shard_from_environment,
    slide_ids,
)
from tiling.manifest import FileLock, ManifestRow, read_manifest, update_manifest


def test_folders_are_searched_recursively_and_other_files_ignored(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ["a/one.svs", "a/b/two.TIF", "a/notes.txt", "a/.hidden.svs", "three.ndpi"]:
        (tmp_path / name).write_bytes(b"x")
    slides, ignored = discover_slides([tmp_path / "a", tmp_path / "three.ndpi"])
    assert sorted(p.name for p in slides) == ["one.svs", "three.ndpi", "two.TIF"]
    assert slides == sorted(slides)
    assert [p.name for p in ignored] == ["notes.txt"]


def test_a_file_named_directly_is_always_taken(tmp_path):
    (tmp_path / "data.bin").write_bytes(b"x")
    slides, _ = discover_slides([tmp_path / "data.bin"])
    assert [p.name for p in slides] == ["data.bin"]


def test_shards_partition_the_list():
    slides = [Path(f"/s/{i}.svs") for i in range(10)]
    parts = [select_shard(slides, f"{k}/3") for k in (1, 2, 3)]
    assert sorted(sum(parts, [])) == slides
    assert parts[0] == slides[0::3]
    with pytest.raises(ValueError, match="K/N"):
        select_shard(slides, "2")
    with pytest.raises(ValueError, match="1..N"):
        select_shard(slides, "4/3")


def test_colliding_stems_get_distinct_ids():
    ids = slide_ids([Path("/a/x.svs"), Path("/b/x.svs"), Path("/c/y z.svs")])
    assert ids[Path("/c/y z.svs")] == "y_z"
    assert ids[Path("/a/x.svs")] != ids[Path("/b/x.svs")]
    assert all(i.startswith("x_") for p, i in ids.items() if p.stem == "x")


def test_mpp_overrides_by_name_or_path(tmp_path):
    csv = tmp_path / "mpp.csv"
    slide = (tmp_path / "s2.svs").resolve()
    csv.write_text(f"slide,mpp\ns1.svs,0.25\n{slide},0.5\n")
    overrides = read_mpp_overrides(csv)
    assert override_for(Path("/anywhere/s1.svs"), overrides) == 0.25
    assert override_for(slide, overrides) == 0.5
    assert override_for(Path("/x/other.svs"), overrides) is None


@pytest.mark.parametrize(
    "text, problem",
    [
        ("slide,mpp\ns1.svs,zero\n", ":2: mpp must be"),
        ("slide,mpp\ns1.svs,-1\n", ":2: mpp must be"),
        ("name,res\ns1,0.5\n", "columns 'slide' and 'mpp'"),
    ],
)
def test_bad_override_csv_names_line(tmp_path, text, problem):
    csv = tmp_path / "mpp.csv"
    csv.write_text(text)
    with pytest.raises(ValueError, match=problem):
        read_mpp_overrides(csv)


def test_manifest_merges_newest_row_per_slide(tmp_path):
    update_manifest(tmp_path, [ManifestRow("a", "/a", "failed", "bad"), ManifestRow("b", "/b", "done", tiles=3)])
    update_manifest(tmp_path, [ManifestRow("a", "/a", "done", tiles=7)])
    rows = read_manifest(tmp_path)
    assert rows["a"]["status"] == "done" and rows["a"]["tiles"] == "7"
    assert rows["b"]["status"] == "done"


def test_file_lock_is_exclusive(tmp_path):
    first, second = FileLock(tmp_path / "x.lock"), FileLock(tmp_path / "x.lock")
    assert first.acquire()
    assert not second.acquire()
    first.release()
    assert second.acquire()
    second.release()


def test_a_missing_input_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.svs: no such file or folder"):
        discover_slides([tmp_path, tmp_path / "nope.svs"])


def test_ignored_files_are_named_first_few_then_counted():
    assert describe_ignored([]) == ""
    assert describe_ignored([Path("a.txt")]) == "ignored 1 file without a slide suffix: a.txt"
    names = [Path(f"{c}.csv") for c in "abcde"]
    assert describe_ignored(names) == "ignored 5 files without a slide suffix: a.csv, b.csv, c.csv and 2 more"


@pytest.mark.parametrize(
    ("environ", "shard"),
    [
        ({}, None),
        ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "16"}, "1/16"),
        ({"SLURM_ARRAY_TASK_ID": "16", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "16"}, "16/16"),
        ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_COUNT": "4"}, "3/4"),
        (
            {
                "SLURM_ARRAY_TASK_ID": "14",
                "SLURM_ARRAY_TASK_MIN": "0",
                "SLURM_ARRAY_TASK_COUNT": "8",
                "SLURM_ARRAY_TASK_STEP": "2",
            },
            "8/8",
        ),
    ],
)
def test_shard_from_a_slurm_job_array(environ, shard):
    assert shard_from_environment(environ) == shard


@pytest.mark.parametrize(
    "environ",
    [
        {"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "3"},  # --array=1,4,9
        {
            "SLURM_ARRAY_TASK_ID": "3",
            "SLURM_ARRAY_TASK_MIN": "0",
            "SLURM_ARRAY_TASK_COUNT": "8",
            "SLURM_ARRAY_TASK_STEP": "2",
        },
        {"SLURM_ARRAY_TASK_ID": "2"},
        {"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "2"},
    ],
)
def test_an_unmappable_slurm_array_asks_for_shard(environ):
    with pytest.raises(ValueError, match="--shard K/N"):
        shard_from_environment(environ)
