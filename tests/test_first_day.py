"""Issue #13, a new user's first day: fast honest errors, no silent reuse or mixing of data.

Each test runs the real `facegan` command: in-process through facegan.flows.cli.main(argv), or in a
subprocess where what is tested is the process itself (its speed, what it imports, what it
leaves on disk without a Prefect server)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import REPO, env_without_servers, error_lines, extract_lfw_subset, run_facegan

# --- item 6: bad input is rejected before Prefect/MLflow start, fast, leaving nothing behind ----

# in_subprocess: one real process per command family (its start-up time, the console entry
# point); the others run the same main(argv) in-process
# the console entry's main(argv), then which heavy modules the rejected command had imported
REPORT_HEAVY_IMPORTS = (
    "import sys\n"
    "from facegan.flows.cli import main\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "finally:\n"
    "    print('heavy:', sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'mlflow', 'torch'}))\n"
)
BAD_COMMANDS = [
    (["acquire", "--url", "file:///etc/passwd"], "not an http(s) URL", True),
    (["acquire", "--path", "{tmp}/missing"], "folder not found", False),
    (["acquire", "--scrape", "ftp://example.org/"], "not an http(s) URL", False),
    (["acquire", "--url-list", "{tmp}/urls.csv"], "URL list not found", False),
    (["acquire", "--path", "{tmp}", "--name", "../../etc"], "invalid name", False),
    (["crop", "--raw", "nope"], "unknown raw set", True),
    (["pipeline", "--source", "{tmp}/missing.tgz"], "no such folder or archive", True),
    (["pipeline", "--source", "ftp://example.org/lfw.tgz"], "no such folder or archive", False),
    (["generate", "--run", "{tmp}/runs/x/checkpoints/best.pt"], "no such checkpoint file", True),
    (["generate", "--run", "models:/facegan-dcgan-64/first"], "models:/<name>/<version>", False),
    (["generate", "--run", "{tmp}/runs/x/checkpoints/best.pt", "--out", "{tmp}/a-file"], "no such checkpoint", False),
    (["evaluate", "--run", "{tmp}/nope.pt"], "no such checkpoint file", True),
    (["evaluate", "--run", "my-run"], "--run 'my-run': no training run of that name", False),
]


@pytest.mark.no_prefect
@pytest.mark.parametrize(
    "argv,message,in_subprocess",
    BAD_COMMANDS,
    ids=[" ".join(a[:2]) + (" (process)" if sub else "") for a, _, sub in BAD_COMMANDS],
)
def test_rejected_command_is_one_line_and_leaves_nothing(tmp_path, capfd, monkeypatch, argv, message, in_subprocess):
    """No PREFECT_API_URL (a user's shell): the command must not start a temporary Prefect
    server, open an MLflow run or create FACEGAN_HOME. It answers before importing Prefect,
    MLflow or torch (what makes a rejection fast; checked in the real processes)."""
    (tmp_path / "a-file").write_text("not a folder")
    home = tmp_path / "home"
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if in_subprocess:
        proc = subprocess.run(
            [sys.executable, "-c", REPORT_HEAVY_IMPORTS, *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env_without_servers(home),
            cwd=REPO,
        )
        code, err = proc.returncode, proc.stderr
        assert "heavy: []" in proc.stdout, f"a rejected command imported {proc.stdout.strip()}"
    else:
        for key in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI"):
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("FACEGAN_HOME", str(home))
        code, _, err = run_facegan(capfd, *args)
    assert code == 2, err
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith("facegan: error: ") and message in lines[0], err
    assert "Starting temporary server" not in err
    assert not home.exists(), f"left behind: {sorted(p.name for p in home.rglob('*'))}"


@pytest.mark.no_prefect
@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--steps", "abc"], "argument --steps: invalid int value: 'abc'"),
        (["train", "--lr-rampdown", "2"], "--lr-rampdown 2.0: Input should be less than or equal to 1"),
        (["train", "--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["generate"], "the following arguments are required: --run"),
        (["no-such-command"], "invalid choice: 'no-such-command'"),
    ],
)
def test_a_bad_option_is_one_line(capsys, argv, message):
    code, out, err = run_facegan(capsys, *argv)
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert lines[0].startswith("facegan") and ": error: " in lines[0] and not out


@pytest.mark.no_prefect
def test_a_rejected_command_imports_no_prefect_mlflow_or_torch(tmp_path):
    code = (
        "import sys\n"
        "from facegan.flows.cli import main\n"
        "try:\n"
        "    main(['acquire', '--url', 'file:///etc/passwd'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 2, exc.code\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'mlflow', 'torch', 'pandas'})\n"
        "print('heavy:', heavy)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env_without_servers(tmp_path / "home"),
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert "heavy: []" in proc.stdout


def test_a_bad_url_leaves_no_raw_folder_and_no_mlflow_run(capsys, facegan_home):
    from facegan.tasks.common import tracking

    before = {r.info.run_id for r in tracking.find_runs("acquire")}
    code, _, err = run_facegan(capsys, "acquire", "--url", "file:///etc/passwd")
    assert code == 2 and error_lines(err) == [
        "facegan: error: --url 'file:///etc/passwd': not an http(s) URL (a local folder or archive goes to --path)"
    ]
    assert not (facegan_home / "raw").exists()
    assert {r.info.run_id for r in tracking.find_runs("acquire")} == before


# --- item 1: the pipeline never trains on another source's raw set ------------------------------


def test_pipeline_refuses_a_raw_set_of_another_source(capsys, tmp_path, facegan_home):
    photos = extract_lfw_subset(tmp_path / "photos" / "lfw-a", 6)
    code, out, err = run_facegan(
        capsys, "acquire", "--path", photos, "--name", "lfw", "--workers", "1", "--no-progress"
    )
    assert code == 0, err
    other = extract_lfw_subset(tmp_path / "other" / "faces", 4, skip_people=20)
    with tarfile.open(tmp_path / "other.tgz", "w:gz") as tar:
        tar.add(other, arcname="faces")
    manifest = facegan_home / "raw" / "lfw" / "manifest.parquet"
    stamp = manifest.stat().st_mtime_ns

    code, _, err = run_facegan(capsys, "pipeline", "--source", tmp_path / "other.tgz", "--name", "lfw")
    assert code == 2 and "Starting temporary server" not in err  # refused before any server starts
    assert error_lines(err) == [
        f"facegan: error: raw set 'lfw' already holds images from {photos.resolve()}, not from "
        f"{tmp_path / 'other.tgz'}: pass another --name (the pipeline never reuses or mixes another "
        "source's images)"
    ]
    assert manifest.stat().st_mtime_ns == stamp  # untouched
    assert not (facegan_home / "datasets").exists()

    # the same source is recognised as already acquired (the pipeline then skips acquire)
    from facegan.config.pipeline import PipelineConfig
    from facegan.tasks.acquisition.sources import check_pipeline_source

    assert check_pipeline_source(PipelineConfig(source=str(photos), name="lfw")) == ("lfw", True)
    assert check_pipeline_source(PipelineConfig(source=str(tmp_path / "other.tgz"), name="other")) == ("other", False)


# --- items 5, 2, 9: generate --------------------------------------------------------------------


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory) -> Path:
    """A real (untrained) 48 px DCGAN generator file, as `facegan train` publishes them."""
    import torch

    from facegan.tasks.training.trained_generators import build_generator, generator_payload

    torch.manual_seed(0)
    meta = {"model": "dcgan", "size": 48, "z_dim": 16, "features": 8, "dataset": "none", "run_name": "tiny"}
    G = build_generator("dcgan", meta)
    path = tmp_path_factory.mktemp("gen") / "runs" / "tiny" / "generator.pt"
    path.parent.mkdir(parents=True)
    torch.save(generator_payload(G.state_dict(), meta), path)
    return path


def test_generate_out_an_existing_file_is_one_line(capsys, tmp_path, generator_file):
    target = tmp_path / "faces.png"
    target.write_bytes(b"keep me")
    code, _, err = run_facegan(capsys, "generate", "--run", generator_file, "--out", target)
    assert code == 2
    assert error_lines(err) == [
        f"facegan: error: --out {target} is a file, not a folder: give --out a folder for the faces"
    ]
    assert target.read_bytes() == b"keep me"


def test_generate_never_mixes_two_requests_in_one_folder(capsys, tmp_path, facegan_home, generator_file):
    out = tmp_path / "faces"
    code, _, err = run_facegan(capsys, "generate", "--run", generator_file, "-n", "6", "--out", out)
    assert code == 0, err
    first = sorted(p.name for p in out.iterdir())
    assert first == [f"{i:06d}.png" for i in range(6)] + ["generate.json", "grid.png"]
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    code, _, err = run_facegan(capsys, "generate", "--run", generator_file, "-n", "2", "--seed", "1", "--out", out)
    assert code == 2
    assert error_lines(err) == [
        f"facegan: error: --out {out} already holds 6 faces of {generator_file} "
        "(seed 0): pick a new or empty --out folder"
    ]
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps  # untouched

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "holiday.jpg").write_bytes(b"x")
    code, _, err = run_facegan(capsys, "generate", "--run", generator_file, "--out", tmp_path / "mine")
    assert code == 2 and "is not empty (1 entries)" in err

    # the same request again is fine (same faces), and the default folder never mixes either
    assert run_facegan(capsys, "generate", "--run", generator_file, "-n", "6", "--out", out)[0] == 0
    code, out_text, _ = run_facegan(capsys, "generate", "--run", generator_file, "-n", "3")
    assert code == 0
    code, out_text2, _ = run_facegan(capsys, "generate", "--run", generator_file, "-n", "2")
    first_default, second_default = Path(out_text.strip().splitlines()[-1]), Path(out_text2.strip().splitlines()[-1])
    assert first_default.parent == facegan_home / "generated"
    assert second_default == Path(f"{first_default}-2")
    assert len(list(first_default.glob("0*.png"))) == 3 and len(list(second_default.glob("0*.png"))) == 2


def test_generate_many_faces_in_batches_with_a_bounded_grid(capsys, tmp_path, generator_file):
    import numpy as np
    from PIL import Image

    from facegan.tasks.training.generated_faces import BATCH, GRID_MAX
    from facegan.tasks.training.trained_generators import iter_samples, load_generator, sample_images

    n = 2 * BATCH + 37
    out = tmp_path / "many"
    code, _, err = run_facegan(capsys, "generate", "--run", generator_file, "-n", n, "--out", out)
    assert code == 0, err
    assert "generating" in err and f"{n}/{n}" in err  # the progress bar
    assert len(list(out.glob("0*.png"))) == n
    with Image.open(out / "grid.png") as grid:  # 10 x 10 faces of 48 px, 2 px padding
        assert grid.size == (10 * 50 + 2, GRID_MAX // 10 * 50 + 2)
    # batches of at most BATCH images, the same faces as one piece (seed only)
    G, meta = load_generator(str(generator_file))
    sizes = [len(b) for b in iter_samples(G, meta, n, seed=0, batch_size=BATCH)]
    assert sizes == [BATCH, BATCH, 37]
    whole = sample_images(G, meta, 5, seed=0)
    with Image.open(out / "000004.png") as face:
        assert np.array_equal(np.asarray(face), whole[4])


# --- item 14: help and docs ---------------------------------------------------------------------


@pytest.mark.no_prefect
def test_help_states_each_default_once_and_required_flags_as_required(capsys):
    import re

    from facegan.flows.cli import SUBCOMMANDS

    for command in SUBCOMMANDS:
        code, out, _ = run_facegan(capsys, command, "--help")
        assert code == 0
        flat = " ".join(out.split())
        assert not re.search(r"\(default[^)]*\) \(default", flat), command
        assert "(default: )" not in flat, command
    for command in ("generate", "evaluate"):
        code, out, _ = run_facegan(capsys, command, "--help")
        usage = " ".join(out.split("\n\n")[0].split())
        assert " --run RUN " in usage and "[--run RUN]" not in usage, usage
    code, _, err = run_facegan(capsys, "generate")
    assert code == 2 and "the following arguments are required: --run" in err


@pytest.mark.no_prefect
def test_config_reference_and_pipeline_help_state_true_things(capsys):
    from facegan.flows.reference import config_reference

    reference = config_reference()
    assert "PydanticUndefined" not in reference
    assert "| `--run` | str | `required` |" in reference
    code, out, _ = run_facegan(capsys, "pipeline", "--help")
    flat = " ".join(out.split())
    assert "15 minutes" not in flat
    readme = " ".join((REPO / "README.md").read_text().split())
    # the help states the README's measurements
    for measured in ("9 min 04 s", "13 min 53 s", "7 min 14 s"):
        assert measured in flat and measured in readme, measured
    from facegan.config.pipeline import DEFAULT_KIMG, DEFAULT_MINUTES

    assert f"trains {DEFAULT_KIMG:g} kimg" in flat and f"**{DEFAULT_KIMG:g} kimg**" in readme
    bound = f"{DEFAULT_MINUTES:g} minutes of training steps"
    assert bound in flat and bound in readme
    assert "15 minutes" not in (REPO / "docs" / "pipeline.md").read_text()


def test_a_missing_best_checkpoint_points_at_what_exists(capsys, tmp_path):
    checkpoints = tmp_path / "runs" / "x-64-began-abc" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "step-000300.pt").write_bytes(b"")
    code, _, err = run_facegan(capsys, "generate", "--run", checkpoints / "best.pt")
    assert code == 2
    assert error_lines(err) == [
        f"facegan: error: --run '{checkpoints / 'best.pt'}': no such checkpoint file (best.pt exists only "
        "for runs scored during training; this run has step-000300.pt, or pass its MLflow run id)"
    ]


# --- items 10, 11: facegan ui, a model-training experiment --------------------------------------


def test_experiment_is_a_model_training_experiment(facegan_home):
    from facegan.tasks.common import tracking

    with tracking.run("crop", run_name="kind-check"):
        pass
    exp = tracking.experiment()
    assert exp.tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"


def test_pipeline_offline_hint_names_source_not_acquire_flags(capsys, tmp_path):
    """No internet here: the LFW preset cannot be downloaded; the hint must name --source (the
    pipeline has no --path or --url)."""
    code, _, err = run_facegan(capsys, "pipeline", "--name", "offline-lfw", "--steps", "1")
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("facegan: error:")]
    assert len(lines) == 1, err
    assert "(offline? pass a local copy or a mirror with --source, e.g. --source " in lines[0]
    assert "--path" not in lines[0] and "--url" not in lines[0]
