"""Learning-curve plots of run directories."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import yaml
from conftest import spy
from matplotlib.figure import Figure

from metarl.plotting import group_runs, plot_runs, read_progress

HEADER = "iteration,return_pre,return_post,env_steps,time_s"


def _run(root, name, *, seed=0, lr=0.1, rows=5, header=HEADER, config=True):
    run = root / name
    run.mkdir(parents=True)
    if config:
        cfg = {"env": "metarl/Navigation2D-v0", "seed": seed, "adaptation": {"lr": lr}}
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    lines = [header] + [
        f"{i},{-50 + i + seed},{-40 + 2 * i + seed},{(i + 1) * 4000},{i * 1.5}" for i in range(rows)
    ]
    (run / "progress.csv").write_text("\n".join(lines) + "\n")
    return run


def test_two_seeds_of_one_config_make_one_band(tmp_path, monkeypatch):
    runs = [_run(tmp_path, "nav-s0", seed=0), _run(tmp_path, "nav-s1", seed=1, rows=3)]
    groups = group_runs(runs)
    assert groups == [("Navigation2D-v0", runs)]
    saved = spy(monkeypatch, Figure, "savefig")  # (figure, path, ...) per call
    out = plot_runs(runs, tmp_path / "plots" / "curves.png")
    assert iio.imread(out).ndim == 3
    (ax,) = saved[0][0].axes
    # What was drawn: per phase the mean over the seeds where both ran (iterations 0-2),
    # the one seed after; a min-max band between the two seeds' values.
    post = {line.get_label(): line for line in ax.lines}["Navigation2D-v0 (2 runs), post"]
    np.testing.assert_array_equal(post.get_xdata(), [0, 1, 2, 3, 4])
    np.testing.assert_allclose(post.get_ydata(), [-39.5, -37.5, -35.5, -34, -32])
    assert len(ax.collections) == 2  # one band per phase
    band = ax.collections[1].get_paths()[0].vertices
    for i in range(3):
        for value in (-40 + 2 * i, -39 + 2 * i):  # seed 0's and seed 1's post return
            assert np.isclose(band, [i, value]).all(axis=1).any(), (i, value)


def test_configs_that_differ_are_separate_curves(tmp_path):
    a = _run(tmp_path, "a", lr=0.1)
    b = _run(tmp_path, "b", lr=0.05)
    c = _run(tmp_path, "c", config=False)
    labels = [label for label, _ in group_runs([a, b, c])]
    assert labels == [
        "Navigation2D-v0 adaptation.lr=0.1",
        "Navigation2D-v0 adaptation.lr=0.05",
        "c",
    ]
    assert plot_runs([a, b, c], tmp_path / "curves.svg").stat().st_size > 0


def test_read_progress_columns(tmp_path):
    run = _run(tmp_path, "r", rows=4)
    progress = read_progress(run)
    np.testing.assert_array_equal(progress["iteration"], [0, 1, 2, 3])
    np.testing.assert_array_equal(progress["return_post"], [-40, -38, -36, -34])


def test_missing_column_names_the_file(tmp_path):
    run = _run(tmp_path, "broken", header="iteration,return_pre,env_steps,time_s")
    with pytest.raises(ValueError, match=r"broken/progress\.csv.*return_post"):
        plot_runs([run], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_missing_progress_file_names_the_run(tmp_path):
    (tmp_path / "empty-run").mkdir()
    with pytest.raises(FileNotFoundError, match="empty-run"):
        plot_runs([tmp_path / "empty-run"], tmp_path / "x.png")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        plot_runs([tmp_path / "nowhere"], tmp_path / "x.png")


def test_bad_cell_and_no_runs(tmp_path):
    run = _run(tmp_path, "r")
    (run / "progress.csv").write_text(HEADER + "\n0,-1,oops,10,1\n")
    with pytest.raises(ValueError, match=r"progress\.csv:2.*return_post"):
        read_progress(run)
    with pytest.raises(ValueError, match="non-empty"):
        plot_runs([], tmp_path / "x.png")


def test_env_steps_axis_named_groups_and_one_phase(tmp_path, monkeypatch):
    a0, a1 = _run(tmp_path, "a0", seed=0), _run(tmp_path, "a1", seed=1)
    b = _run(tmp_path, "b", lr=0.05, rows=3)
    figures = []
    real_savefig = Figure.savefig
    monkeypatch.setattr(
        Figure, "savefig", lambda fig, *a, **k: (figures.append(fig), real_savefig(fig, *a, **k))
    )
    plot_runs(
        [a0, a1, b],
        tmp_path / "steps.png",
        x="env_steps",
        phases=("post",),
        labels={"method A": [a0, a1], "method B": [b]},
    )
    (ax,) = figures[0].axes
    lines = {line.get_label(): line for line in ax.lines}
    assert set(lines) == {"method A (2 runs), post", "method B, post"}
    np.testing.assert_array_equal(lines["method B, post"].get_xdata(), [4000, 8000, 12000])
    np.testing.assert_allclose(lines["method A (2 runs), post"].get_ydata()[:2], [-39.5, -37.5])
    assert ax.get_xlabel() == "environment steps"


def test_bad_axis_phase_or_label_is_named(tmp_path):
    run = _run(tmp_path, "r")
    with pytest.raises(ValueError, match="x must be 'iteration' or 'env_steps'"):
        plot_runs([run], tmp_path / "x.png", x="time")
    with pytest.raises(ValueError, match="phases must be some of"):
        plot_runs([run], tmp_path / "x.png", phases=("during",))
    with pytest.raises(ValueError, match="not among run_dirs"):
        plot_runs([run], tmp_path / "x.png", labels={"other": [tmp_path / "other"]})


def test_subgroups_are_drawn_as_curves_of_their_own(tmp_path, monkeypatch):
    header = (
        HEADER + ",return_pre/forward,return_pre/backward,return_post/forward,return_post/backward"
    )
    run = tmp_path / "dir"
    run.mkdir()
    lines = [header] + [f"{i},0,{i},{i * 10},{i},-1,1,{2 * i},{-i}" for i in range(4)]
    (run / "progress.csv").write_text("\n".join(lines) + "\n")
    figures = []
    real_savefig = Figure.savefig
    monkeypatch.setattr(
        Figure, "savefig", lambda fig, *a, **k: (figures.append(fig), real_savefig(fig, *a, **k))
    )
    plot_runs([run], tmp_path / "sub.png", subgroups=True)
    (ax,) = figures[0].axes
    lines = {line.get_label(): line for line in ax.lines}
    assert set(lines) == {f"dir {g}, {p}" for g in ("forward", "backward") for p in ("pre", "post")}
    np.testing.assert_array_equal(lines["dir backward, post"].get_ydata(), [0, -1, -2, -3])
    assert lines["dir forward, pre"].get_color() == lines["dir forward, post"].get_color()
    assert lines["dir forward, post"].get_color() != lines["dir backward, post"].get_color()
    # A run without the columns (one group, or logged before them) is named, nothing written.
    plain = _run(tmp_path, "plain")
    with pytest.raises(ValueError, match=r"plain/progress\.csv has no per-subgroup columns"):
        plot_runs([plain], tmp_path / "none.png", subgroups=True)
    assert not (tmp_path / "none.png").exists()
