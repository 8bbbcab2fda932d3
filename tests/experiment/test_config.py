import json

import pytest

from experiment.config import ConfigError, GatedBertConfig, build_parser, resolve_config


def resolve(argv=(), env=None):
    return resolve_config(argv, environ=env or {})


def test_defaults_and_preset_shape():
    config = resolve()
    assert (config.model_size, config.task, config.epochs, config.batch_size) == ("tiny", "sst2", 25, 96)
    assert config.learning_rate == 2e-5 and config.vocab_size == 30522 and config.max_len == 128
    assert (config.num_layers, config.d_model, config.num_heads, config.dff) == (2, 256, 4, 512)


@pytest.mark.parametrize("size,shape", [("small", (6, 512, 8, 1024)), ("base", (12, 768, 12, 3072)),
                                        ("large", (24, 1024, 16, 4096))])
def test_presets(size, shape):
    config = resolve(["--model_size", size])
    assert (config.num_layers, config.d_model, config.num_heads, config.dff) == shape


def test_precedence_across_all_layers(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"model_size": "small", "num_layers": 3, "epochs": 7, "task": "rte", "seed": 5}))
    # file beats preset (num_layers), defaults fill the rest
    config = resolve(["--config", str(path)])
    assert (config.num_layers, config.d_model, config.epochs, config.task, config.seed) == (3, 512, 7, "rte", 5)
    # environment beats file
    env = {"EPOCHS": "4", "TASK": "cola"}
    config = resolve(["--config", str(path)], env)
    assert (config.epochs, config.task, config.seed) == (4, "cola", 5)
    # flags beat environment
    config = resolve(["--config", str(path), "--task", "mrpc"], env)
    assert (config.epochs, config.task, config.num_layers) == (4, "mrpc", 3)


def test_env_aliases_and_types():
    env = {"GLUE_DIR": "", "EPOCHS": "9", "BENCHMARK_EPOCHS": "2", "VERBOSE": "2", "DROPOUT_RATE": "0.1",
           "DYNAMIC_PADDING": "false", "MAX_TRAIN_SAMPLES": "none", "MODEL_SIZE": "base"}
    config = resolve(env=env)
    assert config.epochs == 2  # BENCHMARK_EPOCHS overrides EPOCHS
    assert config.verbose == 2 and config.dropout_rate == 0.1 and config.dynamic_padding is False
    assert config.max_train_samples is None and config.num_layers == 12
    assert resolve(["--epochs", "5"], env).epochs == 5  # a flag still wins


def test_glue_dir_env_sets_data_dir(glue_dir):
    assert resolve(env={"GLUE_DIR": str(glue_dir)}).data_dir == str(glue_dir)


@pytest.mark.parametrize(
    "argv,env,message",
    [
        (["--task", "sst3"], {}, "unknown task 'sst3'; choose one of: sst2"),
        ([], {"MODEL_SIZE": "huge"}, "unknown model_size 'huge'; choose one of: tiny, small, base, large"),
        (["--d_model", "100", "--num_heads", "3"], {}, "num_heads must divide d_model, got num_heads=3, d_model=100"),
        (["--epochs", "0"], {}, "epochs must be positive, got epochs=0"),
        ([], {"BATCH_SIZE": "-8"}, "batch_size must be positive, got batch_size=-8"),
        (["--dropout_rate", "1.5"], {}, r"dropout_rate must be in \[0.0, 1.0\), got dropout_rate=1.5"),
        (["--warmup_ratio", "-0.1"], {}, r"warmup_ratio must be in \[0.0, 1.0\), got warmup_ratio=-0.1"),
        (["--verbose", "3"], {}, "unknown verbose 3; choose one of: 0, 1, 2"),
        ([], {"EPOCHS": "three"}, "environment variable EPOCHS gives epochs='three', which is not a valid int"),
        (["--dynamic_padding", "maybe"], {}, "flag --dynamic_padding gives dynamic_padding='maybe'"),
        (["--pruning_method", "gumbel", "--pruning_granularity", "head"], {},
         "pruning_granularity head is for magnitude, movement, spt, soft_movement, not gumbel; drop "
         "--pruning_granularity"),
        (["--pruning_granularity", "neuron"], {}, "not baseline; drop --pruning_granularity"),
        (["--pruning_method", "spt", "--pruning_granularity", "both", "--pruning_scope", "layer"], {},
         "ranks heads and neurons across all blocks; drop --pruning_scope layer"),
        # tiny at 128 tokens: 512 neurons of 2*128*256 MACs against 4 heads of 4*128*256*64 + 2*128*128*64
        (["--pruning_method", "magnitude", "--pruning_granularity", "neuron", "--end_sparsity", "0.5"], {},
         r"end_sparsity=0.5 asks for more than the neuron units hold: at most 0.4444 of the blocks' MACs"),
        (["--pruning_method", "soft_movement", "--pruning_granularity", "neuron", "--target_sparsity", "0.5"], {},
         r"target_sparsity=0.5 asks for more than the neuron units hold: at most 0.4444 of the blocks' MACs"),
        (["--pruning_method", "spt", "--target_sparsity", "0.5"], {},
         "target_sparsity is used by learned masks only; add --pruning_method gumbel or soft_movement"),
        (["--distill_hidden_weight", "0.5"], {}, "distill_hidden_weight=0.5 needs a model to distil from; add "
         "--teacher DIR"),
        (["--teacher", "/no/such/teacher"], {}, "teacher /no/such/teacher is not a folder"),
        (["--distill_alpha", "1.5"], {}, r"distill_alpha must be in \[0.0, 1.0\], got distill_alpha=1.5"),
        (["--pruning_method", "magnitude", "--pruning_granularity", "rows"], {},
         "unknown pruning_granularity 'rows'; choose one of: weight, neuron, head, both"),
        (["--layer_lr_decay", "0"], {}, "layer_lr_decay must be positive, got layer_lr_decay=0"),
        (["--layer_lr_decay", "1.5"], {}, r"layer_lr_decay must be in \[0.0, 1.0\], got layer_lr_decay=1.5"),
    ],
)
def test_bad_values_are_named(argv, env, message):
    with pytest.raises(ConfigError, match=message):
        resolve(argv, env)


def test_unknown_flag_is_rejected(capsys):
    with pytest.raises(SystemExit) as exit_info:
        resolve(["--epoch", "3"])
    assert exit_info.value.code == 2
    assert "--epoch" in capsys.readouterr().err


def test_unknown_file_key_suggests_the_right_one(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"epoch": 3}))
    with pytest.raises(ConfigError, match=r"unknown config key 'epoch' in .*bad.json \(did you mean 'epochs'\?\)"):
        resolve(["--config", str(path)])


def test_file_values_are_type_checked(tmp_path):
    path = tmp_path / "typed.json"
    path.write_text(json.dumps({"epochs": "3"}))
    with pytest.raises(ConfigError, match=r"epochs must be int, got '3' \(str\)"):
        resolve(["--config", str(path)])
    path.write_text(json.dumps({"batch_size": True}))
    with pytest.raises(ConfigError, match="batch_size must be int"):
        resolve(["--config", str(path)])
    # Checked as the file is read: a folder field is looked at before the config is built.
    for name in ("teacher", "init_from", "train_file"):
        path.write_text(json.dumps({name: 1.0}))
        with pytest.raises(ConfigError, match=rf"{name} must be str, got 1.0 \(float\) in .*typed.json"):
            resolve(["--config", str(path)])


def test_missing_or_invalid_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        resolve(["--config", str(tmp_path / "none.json")])
    (tmp_path / "broken.json").write_text("{epochs: 3")
    with pytest.raises(ConfigError, match="not valid JSON"):
        resolve(["--config", str(tmp_path / "broken.json")])


def test_data_dir_without_task_files(tmp_path):
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "train.tsv").write_text("sentence\tlabel\n")
    with pytest.raises(ConfigError, match=r"lacks the rte files .*RTE/train.tsv"):
        resolve(["--data_dir", str(tmp_path), "--task", "rte"])
    with pytest.raises(ConfigError, match=r"lacks the sst2 files .*SST-2/dev.tsv"):
        resolve(["--data_dir", str(tmp_path)])


def test_saved_config_loads_back(tmp_path):
    config = resolve(["--model_size", "small", "--num_heads", "4", "--task", "stsb", "--max_eval_samples", "10"])
    config.save(tmp_path / "config.json")
    assert GatedBertConfig.load(tmp_path / "config.json") == config
    assert not list(tmp_path.glob("*.tmp"))  # written atomically
    # and it is a valid --config file
    assert resolve(["--config", str(tmp_path / "config.json")]) == config


def test_direct_construction_is_validated():
    with pytest.raises(ConfigError, match="epochs must be int"):
        GatedBertConfig(epochs=2.5)
    with pytest.raises(ConfigError, match="unknown config key 'bogus'"):
        GatedBertConfig.from_dict({"bogus": 1})


def test_help_lists_every_field_with_its_env_name():
    text = " ".join(build_parser().format_help().split())
    for name in ("--model_size", "--task", "--epochs", "--data_dir", "--max_train_samples", "--verbose"):
        assert name in text
    assert "env BATCH_SIZE" in text and "--config" in text


def test_closed_fraction_rule_for_sparsity_fields():
    """Sparsity fields (added by the pruning issues) declare `fraction=(0, 1, True)`: 1.0 allowed, 1.2 not."""
    import dataclasses

    from experiment.config import _check_rules, _field

    @dataclasses.dataclass
    class Probe:
        end_sparsity: float = _field(0.5, "target sparsity", fraction=(0.0, 1.0, True))

    _check_rules(Probe(1.0))
    _check_rules(Probe(0.0))
    with pytest.raises(ConfigError, match=r"end_sparsity must be in \[0.0, 1.0\], got end_sparsity=1.2"):
        _check_rules(Probe(1.2))
    with pytest.raises(ConfigError, match=r"end_sparsity must be in \[0.0, 1.0\], got end_sparsity=-0.1"):
        _check_rules(Probe(-0.1))


def test_pruning_fields_defaults_and_method_name():
    config = resolve()
    assert (config.enable_pruning, config.pruning_method, config.method) == (False, "none", "baseline")
    assert (config.end_sparsity, config.pruning_start_epoch, config.pruning_end_epoch) == (0.99, 4, 23)
    assert (config.spt_epsilon, config.spt_reward_alpha, config.spt_explore_per_layer) == (0.0025, 0.125, False)
    assert config.sparsity_steps[:4] == (10.0, 25.0, 50.0, 70.0) and config.sparsity_steps[-1] == 99.5
    config = resolve(["--enable_pruning", "true", "--pruning_method", "spt"])
    assert config.method == "spt"


def test_the_pruning_method_alone_enables_pruning(tmp_path):
    for method in ("magnitude", "movement", "spt", "gumbel"):
        config = resolve(["--pruning_method", method])
        assert (config.enable_pruning, config.method) == (True, method)
    assert resolve(env={"PRUNING_METHOD": "movement"}).enable_pruning is True
    assert resolve(["--pruning_method", "movement"]).to_dict()["enable_pruning"] is True  # saved resolved
    # A saved config holds both fields; a method chosen over it decides enable_pruning anew.
    path = tmp_path / "saved.json"
    path.write_text(json.dumps({"enable_pruning": False, "pruning_method": "none"}))
    assert resolve(["--config", str(path)]).method == "baseline"
    assert resolve(["--config", str(path), "--pruning_method", "gumbel"]).method == "gumbel"
    path.write_text(json.dumps({"enable_pruning": True, "pruning_method": "movement"}))
    assert resolve(["--config", str(path)], {"PRUNING_METHOD": "none"}).method == "baseline"
    with pytest.raises(ConfigError, match="enable_pruning is true but pruning_method is 'none'"):
        resolve(["--config", str(path), "--enable_pruning", "--pruning_method", "none"])


def test_boolean_flags_alone_mean_true():
    config = resolve(["--pruning_method", "gumbel", "--freeze", "--wandb", "false", "--dynamic_padding", "no"])
    assert (config.freeze, config.wandb, config.dynamic_padding) == (True, False, False)
    assert "--freeze [BOOL]" in build_parser().format_help()


def test_sparsity_steps_from_flags_env_and_json(tmp_path):
    assert resolve(["--sparsity_steps", "10 50, 90"]).sparsity_steps == (10.0, 50.0, 90.0)
    assert resolve(env={"SPARSITY_STEPS": "20,40"}).sparsity_steps == (20.0, 40.0)
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"sparsity_steps": [30, 60.5]}))
    config = resolve(["--config", str(path)])
    assert config.sparsity_steps == (30.0, 60.5)
    assert GatedBertConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(("argv", "message"), [
    (["--enable_pruning", "true"], "pruning_method is 'none'"),
    (["--enable_pruning", "false", "--pruning_method", "movement"],
     "enable_pruning is false but pruning_method is 'movement'; drop enable_pruning"),
    (["--enable_pruning"], "enable_pruning is true but pruning_method is 'none'"),
    (["--pruning_method", "random"], "unknown pruning_method 'random'"),
    (["--end_sparsity", "1.5"], "end_sparsity must be in [0.0, 1.0], got end_sparsity=1.5"),
    (["--start_sparsity", "0.5", "--end_sparsity", "0.4"], "start_sparsity must not exceed end_sparsity"),
    (["--sparsity_steps", "10 x"], "sparsity_steps='10 x', which is not a valid tuple"),
    (["--sparsity_steps", "50 20"], "non-decreasing percentages in [0, 100], got [50.0, 20.0]"),
    (["--sparsity_steps", "10 150"], "got [10.0, 150.0]"),
    (["--pruning_scope", "rows"], "unknown pruning_scope 'rows'"),
    (["--pruning_frequency_steps", "0"], "pruning_frequency_steps must be positive"),
    (["--enable_pruning", "true", "--pruning_method", "magnitude", "--epochs", "3"],
     "pruning_start_epoch=4 leaves no epoch to prune in"),
])
def test_bad_pruning_values_are_named(argv, message):
    with pytest.raises(ConfigError) as error:
        resolve(argv)
    assert message in str(error.value)


GUMBEL = ["--enable_pruning", "true", "--pruning_method", "gumbel"]


def test_gumbel_fields_defaults_and_parsing(tmp_path):
    config = resolve(GUMBEL + ["--epochs", "2"])  # the pruning window does not apply to learned masks
    assert config.method == "gumbel" and config.learn_masks == ("head", "neuron")
    assert (config.gumbel_temp_start, config.gumbel_temp_end, config.gumbel_temp_anneal) == (5.0, 0.1, "exponential")
    assert (config.sparsity_loss, config.quantization_loss, config.log_loss_every) == (0.1, 0.01, 5)
    assert (config.target_sparsity, config.masks_lr, config.freeze) == (None, 0.01, False)
    assert resolve(["--learn_masks", "ffn_out,head"]).learn_masks == ("head", "ffn_out")
    assert resolve(env={"LEARN_MASKS": "all"}).learn_masks == ("head", "neuron", "ffn_out")
    config = resolve(GUMBEL + ["--target_sparsity", "0.5", "--freeze", "true"])
    assert (config.target_sparsity, config.freeze, config.target_measure) == (0.5, True, "units")
    assert resolve(GUMBEL + ["--target_sparsity", "0.4", "--target_measure", "macs"]).target_measure == "macs"
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"learn_masks": ["ffn_int"]}))  # the earlier name of the neuron kind
    config = resolve(["--config", str(path)])
    assert config.learn_masks == ("neuron",)
    assert GatedBertConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_run_name_comes_from_run_name_not_name():
    assert resolve(env={"NAME": "my-laptop"}).name == ""
    assert resolve(env={"RUN_NAME": "sweep-3"}).name == "sweep-3"
    assert resolve(["--name", "cli"], env={"RUN_NAME": "env"}).name == "cli"


@pytest.mark.parametrize(("argv", "message"), [
    (["--learn_masks", "heads"], "learn_masks: unknown unit kind(s) ['heads']"),
    (["--target_sparsity", "0.5"], "target_sparsity is used by learned masks only"),
    (["--freeze", "true"], "freeze is used by learned masks only"),
    (GUMBEL + ["--target_sparsity", "1"], "target_sparsity must be in [0.0, 1.0), got target_sparsity=1.0"),
    (GUMBEL + ["--gumbel_temp_anneal", "cosine"], "unknown gumbel_temp_anneal 'cosine'"),
    (GUMBEL + ["--gumbel_temp_end", "0"], "gumbel_temp_end must be positive"),
    (GUMBEL + ["--log_loss_every", "0"], "log_loss_every must be positive"),
    (GUMBEL + ["--learn_masks", ""], "pruning_method gumbel learns masks of the learn_masks kinds, but learn_masks is "
                                     "empty"),
    (["--target_measure", "macs"], "target_measure is used by learned masks only"),
    (GUMBEL + ["--target_measure", "flops"], "unknown target_measure 'flops'"),
    (GUMBEL + ["--target_measure", "macs"], "target_measure macs reads target_sparsity as a fraction of the blocks' "
                                            "MACs, but target_sparsity is not set"),
    (GUMBEL + ["--target_measure", "macs", "--target_sparsity", "0.5", "--learn_masks", "all"],
     "drop ffn_out from --learn_masks"),
    # The tiny preset's neurons hold 4 * 128 * 256 * 512 / 2 of its 75,497,472 block MACs at 128 tokens: 0.4444.
    (GUMBEL + ["--target_measure", "macs", "--target_sparsity", "0.5", "--learn_masks", "neuron"],
     "target_sparsity=0.5 asks for more than the learned neuron masks hold: at most 0.4444 of the blocks' MACs"),
])
def test_bad_gumbel_values_are_named(argv, message):
    with pytest.raises(ConfigError) as error:
        resolve(argv)
    assert message in str(error.value)


def test_asking_for_wandb_without_the_package_is_an_error(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else
                        real_find_spec(name, *a))
    with pytest.raises(ConfigError, match="--wandb true needs the wandb package"):
        resolve(["--wandb", "true"])
    assert resolve().wandb is False  # not asked for: no error
