"""The cachekit command."""

from __future__ import annotations

import json

import pytest

from cachekit.cli import main


def test_plugins_lists_the_diffusers_plugin(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "cachekit_diffusers" in out and "find_denoisers" in out


def test_policies_lists_kinds_and_fields(capsys):
    assert main(["policies"]) == 0
    out = capsys.readouterr().out
    for text in ("uniform:", "nonuniform:", "similarity:", "interval", "threshold", "max_consecutive_reuse"):
        assert text in out


def test_schema_is_json_with_policy_kinds(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "CacheConfig"
    assert {"UniformPolicy", "NonUniformPolicy", "SimilarityPolicy"} <= set(schema["$defs"])


def test_inspect_shows_declared_regions_with_flop_share(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("declare:\n  - {name: middle, entry: blocks.1, exit: blocks.4}\n")
    code = main(
        ["inspect", "tests.models:tiny_transformer", "--config", str(config), "--inputs", "tests.models:tiny_inputs"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "middle (default)" in out and "residual" in out
    share = float(out.split("residual")[1].split("%")[0].split()[-1])
    assert 60 < share < 70  # 4 of 6 blocks, plus embeddings and output layers outside


@pytest.mark.parametrize(
    "argv,message",
    [
        (["inspect", "nowhere:thing"], "cannot import 'nowhere'"),
        (["inspect", "tests.models"], "is not of the form 'package.module:factory'"),
        (["inspect", "tests.models:nothing"], "has no attribute 'nothing'"),
        (["inspect", "tests.models:tiny_transformer", "--config", "missing.yaml"], "does not exist"),
    ],
)
def test_errors_are_one_line_with_exit_status_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cachekit {argv[0]}: error:") and message in err


def test_plugins_shows_each_first_sentence_whole_and_wrapped(capsys, monkeypatch):
    import cachekit_dit

    monkeypatch.setenv("COLUMNS", "120")
    assert main(["plugins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines[0].index("description")
    described = " ".join(line[start:] for line in lines[2:]).split()
    sentence = " ".join(cachekit_dit.__doc__.split("\n\n", 1)[0].split())
    assert sentence.endswith("in the DiT paper's code.")
    assert sentence in " ".join(described)
    assert max(map(len, lines)) <= 120


def test_demo_and_run_describe_their_own_out_folder(capsys):
    helps = {}
    for command in ("demo", "run"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        helps[command] = " ".join(capsys.readouterr().out.split())
    assert "--out OUT output folder (default: cachekit-demo)" in helps["demo"]
    assert "--out OUT output folder (default: the config's output_dir, else runs/<name>)" in helps["run"]


def test_ctrl_c_in_any_command_is_one_line_and_exit_status_130(capsys, monkeypatch):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr("cachekit.plugin_manager.load_plugins", interrupted)
    assert main(["plugins"]) == 130
    assert capsys.readouterr().err == "cachekit plugins: interrupted\n"
