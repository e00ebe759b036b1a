import pytest

from tango_core.errors import ConfigError, UnknownNameError
from tango_core.selection import default_rules, load_rules, recommend

# The seed README's table, written out independently of selection_rules.yaml.
SEED = {
    ("detection", 50): ["yolov7-tiny", "yolov7-x", "yolov7-x", "yolov7-w6", "yolov7-e6", "yolov7-d6", "yolov7-e6e"],
    ("detection", 51): ["yolov9-t", "yolov9-s", "yolov9-m", "yolov9-m", "yolov9-c", "yolov9-e", "yolov9-e"],
    ("classification", 10): ["resnet-cifar20", "resnet-cifar32", "resnet-cifar44", "resnet-cifar56",
                             "resnet-cifar110", "resnet-cifar152", "resnet-cifar200"],
    ("classification", 11): ["resnet18", "resnet34", "resnet50", "resnet50", "resnet101", "resnet152", "resnet152"],
}
#: a memory inside each tier: <=2, <=4, <=6, <=8, <=10, <=12, >12 GB
MEMORY = [1.5, 4, 5, 8, 9.5, 12, 64]


@pytest.mark.parametrize("row", sorted(SEED))
@pytest.mark.parametrize("tier", range(7))
def test_each_row_and_tier_of_the_seed_table(row, tier):
    task, nc = row
    rec = recommend(task, nc, memory_gb=MEMORY[tier])
    assert rec.model == SEED[row][tier]
    assert rec.tier == tier
    assert f"{MEMORY[tier]:g} GB" in rec.reason and rec.tier_label in rec.reason
    assert rec.model not in rec.alternatives


def test_class_count_boundaries():
    assert recommend("detection", 1, memory_gb=1).family == "YOLOv7"
    assert recommend("detection", 80, memory_gb=1).family == "YOLOv9"
    assert recommend("classification", 2, memory_gb=1).family == "ResNet-CIFAR"
    assert recommend("classification", 1000, memory_gb=1).family == "ResNet"


def test_segmentation_has_a_rule_of_the_same_form():
    models = [recommend("segmentation", 3, memory_gb=m).model for m in MEMORY]
    assert models[0] == "yolov9-t-seg" and models[-1] == "yolov9-e-seg"


def test_cpu_only_target_gets_the_smallest_tier_and_says_so():
    rec = recommend("classification", 5, target="x86-cpu")
    assert rec.model == "resnet-cifar20" and rec.cpu_only
    assert "CPU only" in rec.reason


def test_unknown_memory_is_explicit():
    rec = recommend("detection", 3, target="k8s")
    assert rec.memory_gb is None and rec.tier == 0
    assert "unknown" in rec.reason


def test_target_memory_is_used():
    rec = recommend("detection", 3, target="jetson-agx-orin")
    assert rec.model == "yolov7-e6e" and rec.target == "jetson-agx-orin"
    assert rec.nas_space == "yolov7-supernet"
    assert recommend("detection", 3, target="jetson-nano").model == "yolov7-x"


def test_override_keeps_reason_and_rejects_unknown():
    rec = recommend("classification", 4, memory_gb=3)
    chosen = rec.override("resnet-cifar56", check_registry=False)
    assert chosen.model == "resnet-cifar56" and chosen.overridden_from == "resnet-cifar32"
    assert "resnet-cifar32" in chosen.reason
    with pytest.raises(UnknownNameError, match="resnet-cifar56"):
        rec.override("resnet-cifar57", check_registry=False)


def test_bad_inputs():
    with pytest.raises(UnknownNameError):
        recommend("captioning", 3)
    with pytest.raises(ConfigError, match="num_classes"):
        recommend("detection", 0)


def test_malformed_rule_file_names_the_field(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("tiers_gb: [2, null]\ntier_labels: [a, b]\nrules:\n  - {task: detection, family: X, models: [a]}\n")
    with pytest.raises(ConfigError) as err:
        load_rules(path)
    assert err.value.field == "rules[0].models"


def test_table_is_data():
    assert len(default_rules().all_models()) == len(set(default_rules().all_models()))
