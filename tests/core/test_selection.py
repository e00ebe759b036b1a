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


# --- segmentation: every tier, like the seed's rows ----------------------------------------------
SEGMENTATION = ["yolov9-t-seg", "yolov9-s-seg", "yolov9-m-seg", "yolov9-m-seg", "yolov9-c-seg", "yolov9-e-seg",
                "yolov9-e-seg"]


@pytest.mark.parametrize("nc", [1, 3, 80, 1000])
@pytest.mark.parametrize("tier", range(7))
def test_each_tier_of_the_segmentation_row(nc, tier):
    rec = recommend("segmentation", nc, memory_gb=MEMORY[tier])
    assert rec.model == SEGMENTATION[tier] and rec.family == "YOLOv9-seg"
    assert rec.tier == tier and rec.tier_label == ["<=2G", "<=4G", "<=6G", "<=8G", "<=10G", "<=12G", ">12G"][tier]
    assert f"{MEMORY[tier]:g} GB" in rec.reason and rec.tier_label in rec.reason
    assert rec.model not in rec.alternatives and set(rec.alternatives) == set(SEGMENTATION) - {rec.model}


# --- accelerators without memory of their own: the cap columns ------------------------------------
#: the largest model of each row for an Edge TPU / NPU and for a mobile GPU (written out by hand)
CAPS = {
    ("detection", 50): {"edge": "yolov7-tiny", "mobile": "yolov7-tiny"},
    ("detection", 51): {"edge": "yolov9-t", "mobile": "yolov9-s"},
    ("classification", 10): {"edge": "resnet-cifar20", "mobile": "resnet-cifar32"},
    ("classification", 11): {"edge": "resnet18", "mobile": "resnet18"},
    ("segmentation", 3): {"edge": "yolov9-t-seg", "mobile": "yolov9-s-seg"},
}
ROWS = {**SEED, ("segmentation", 3): SEGMENTATION}
CAPPED = {"edge-tpu": ("edge", "SRAM"), "rknn-npu": ("edge", "NPU"), "adreno-gpu": ("mobile", "phone"),
          "mali-gpu": ("mobile", "Mali")}
#: what "tiny / small" means in every row: the sizes a phone, an NPU or an Edge TPU runs
SMALL = {"yolov7-tiny", "yolov9-t", "yolov9-s", "resnet-cifar20", "resnet-cifar32", "resnet18", "yolov9-t-seg",
         "yolov9-s-seg"}


@pytest.mark.parametrize("row", sorted(ROWS))
@pytest.mark.parametrize("accelerator", sorted(CAPPED))
@pytest.mark.parametrize("tier", range(7))
def test_each_row_and_tier_capped_for_edge_npu_and_mobile_accelerators(row, accelerator, tier):
    task, nc = row
    cap, word = CAPPED[accelerator]
    cap_model = CAPS[row][cap]
    cap_tier = ROWS[row].index(cap_model)
    rec = recommend(task, nc, memory_gb=MEMORY[tier], accelerator=accelerator)
    assert rec.model == ROWS[row][min(tier, cap_tier)] and rec.model in SMALL
    assert rec.accelerator == accelerator and not rec.cpu_only
    assert accelerator in rec.reason and word in rec.reason  # the reason says why
    assert rec.model not in rec.alternatives
    if tier > cap_tier:
        assert rec.cap == cap and "capped" in rec.reason and f"{MEMORY[tier]:g} GB" in rec.reason
        assert rec.tier == cap_tier and rec.tier_label == {"edge": "Edge TPU / NPU", "mobile": "mobile GPU"}[cap]
    else:
        assert rec.cap is None and rec.tier == tier and "within" in rec.reason


@pytest.mark.parametrize("accelerator", sorted(CAPPED))
def test_capped_accelerator_with_unknown_memory_gets_the_smallest_tier(accelerator):
    rec = recommend("detection", 80, accelerator=accelerator)
    assert rec.model == "yolov9-t" and rec.tier == 0 and "unknown" in rec.reason and accelerator in rec.reason


def test_gpu_with_its_own_memory_and_other_accelerators_are_sized_by_memory():
    for accelerator in ("nvidia-gpu", "other"):
        assert recommend("detection", 3, memory_gb=16, accelerator=accelerator).model == "yolov7-e6e"
    assert "no rule" in recommend("detection", 3, memory_gb=16, accelerator="other").reason
    rec = recommend("detection", 3, memory_gb=16, accelerator="none")
    assert rec.model == "yolov7-tiny" and rec.cpu_only and "CPU only" in rec.reason
    # an explicit cpu_only=False sizes a CPU target by the memory given
    assert recommend("detection", 3, target="x86-cpu", memory_gb=16, cpu_only=False).model == "yolov7-e6e"
    with pytest.raises(UnknownNameError, match="edge-tpu"):
        recommend("detection", 3, memory_gb=16, accelerator="edge-tp")


def test_every_accelerator_kind_has_an_explicit_sizing():
    from tango_core.targets import ACCELERATORS

    table = default_rules()
    sizing = {k: r.sizing for k, r in table.accelerators}
    assert sizing == {"none": "cpu", "nvidia-gpu": "memory", "other": "memory", "edge-tpu": "edge",
                      "rknn-npu": "edge", "adreno-gpu": "mobile", "mali-gpu": "mobile"}
    assert set(sizing) == set(ACCELERATORS)
    for kind, rule in table.accelerators:
        if rule.sizing in ("edge", "mobile"):
            assert len(rule.reason) > 80, f"{kind} must say why it is capped"
    for rule in table.rules:
        assert {c: m for c, m in rule.caps} == CAPS[(rule.task, 50 if rule.max_classes == 50 else
                                                     10 if rule.max_classes == 10 else
                                                     3 if rule.task == "segmentation" else
                                                     51 if rule.task == "detection" else 11)]


# Each catalog target, each row (detection <= 50 / > 50 classes, classification <= 10 / > 10,
# segmentation): what a user of that target should be offered, written out by hand.
CATALOG = {
    # cloud and servers: NVIDIA GPUs with their own memory; unknown memory -> smallest, and says so
    "aws-ecs": ["yolov7-e6e", "yolov9-e", "resnet-cifar200", "resnet152", "yolov9-e-seg"],          # T4 16 GB
    "gcp-cloud-run": ["yolov7-e6e", "yolov9-e", "resnet-cifar200", "resnet152", "yolov9-e-seg"],    # L4 24 GB
    "kt-cloud": ["yolov7-tiny", "yolov9-t", "resnet-cifar20", "resnet18", "yolov9-t-seg"],          # unknown
    "k8s": ["yolov7-tiny", "yolov9-t", "resnet-cifar20", "resnet18", "yolov9-t-seg"],               # unknown
    "pc-nvidia": ["yolov7-tiny", "yolov9-t", "resnet-cifar20", "resnet18", "yolov9-t-seg"],         # unknown
    "x86-cpu": ["yolov7-tiny", "yolov9-t", "resnet-cifar20", "resnet18", "yolov9-t-seg"],           # CPU only
    # Jetsons: the GPU runs from the unified memory, so the memory tiers apply (seed table)
    "jetson-agx-orin": ["yolov7-e6e", "yolov9-e", "resnet-cifar200", "resnet152", "yolov9-e-seg"],  # 32 GB
    "jetson-agx-xavier": ["yolov7-e6e", "yolov9-e", "resnet-cifar200", "resnet152", "yolov9-e-seg"],
    "jetson-nano": ["yolov7-x", "yolov9-s", "resnet-cifar32", "resnet34", "yolov9-s-seg"],          # 4 GB
    # phones and boards with a mobile GPU: small models, whatever the RAM
    "galaxy-s22": ["yolov7-tiny", "yolov9-s", "resnet-cifar32", "resnet18", "yolov9-s-seg"],
    "galaxy-s23": ["yolov7-tiny", "yolov9-s", "resnet-cifar32", "resnet18", "yolov9-s-seg"],
    "comma-3x": ["yolov7-tiny", "yolov9-s", "resnet-cifar32", "resnet18", "yolov9-s-seg"],
    "odroid-n2": ["yolov7-tiny", "yolov9-s", "resnet-cifar32", "resnet18", "yolov9-s-seg"],
    # Edge TPU and NPU: the smallest models
    "rpi5-coral": ["yolov7-tiny", "yolov9-t", "resnet-cifar20", "resnet18", "yolov9-t-seg"],
    "odroid-m1": ["yolov7-tiny", "yolov9-t", "resnet-cifar20", "resnet18", "yolov9-t-seg"],
}
CATALOG_ROWS = [("detection", 3), ("detection", 80), ("classification", 5), ("classification", 100),
                ("segmentation", 3)]


@pytest.fixture
def builtin_catalog(monkeypatch, tmp_path):
    from tango_core import targets as T

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("TANGO_TARGETS_PATH", raising=False)
    T.reload_catalog()
    yield T
    T.reload_catalog()


def test_every_catalog_target_is_in_the_expected_table(builtin_catalog):
    assert sorted(builtin_catalog.list_targets()) == sorted(CATALOG)


@pytest.mark.parametrize("tid", sorted(CATALOG))
def test_every_catalog_target_gets_a_sensible_model(builtin_catalog, tid):
    target = builtin_catalog.get_target(tid)
    for (task, nc), expected in zip(CATALOG_ROWS, CATALOG[tid], strict=True):
        rec = recommend(task, nc, target=tid)
        assert rec.model == expected, (tid, task, nc, rec.reason)
        assert rec.target == tid and rec.accelerator == target.accelerator
        if target.kind == "ondevice" and target.accelerator != "nvidia-gpu":
            assert rec.model in SMALL and rec.accelerator in rec.reason
        if target.memory_gb is None:
            assert rec.tier == 0 and ("unknown" in rec.reason or "CPU only" in rec.reason)


def test_on_device_targets_without_a_gpu_of_their_own_get_small_models_for_any_class_count(builtin_catalog):
    edge = [t for t in builtin_catalog.list_targets()
            if builtin_catalog.get_target(t).kind == "ondevice" and builtin_catalog.get_target(t).accelerator != "nvidia-gpu"]
    assert set(edge) == {"galaxy-s22", "galaxy-s23", "comma-3x", "odroid-n2", "rpi5-coral", "odroid-m1"}
    for tid in edge:
        for task in ("detection", "classification", "segmentation"):
            for nc in (1, 10, 11, 50, 51, 1000):
                for memory_gb in (None, 1, 8, 64):  # the memory given does not lift the cap
                    assert recommend(task, nc, target=tid, memory_gb=memory_gb).model in SMALL


def test_a_custom_edge_target_is_capped_too(builtin_catalog):
    data = builtin_catalog.get_target("rpi5-coral").to_dict()
    data.update(id="my-coral-usb", name="Coral USB on a 16 GB box", memory_gb=16, accelerator_name="Coral USB")
    builtin_catalog.register_target(data)
    rec = recommend("classification", 200, target="my-coral-usb")
    assert rec.model == "resnet18" and rec.cap == "edge" and "Coral USB" in rec.reason and "16 GB" in rec.reason
    chosen = rec.override("resnet34", check_registry=False)  # the user may still ask for more
    assert chosen.model == "resnet34" and chosen.overridden_from == "resnet18"


_TABLE_HEAD = "tiers_gb: [2, null]\ntier_labels: [a, b]\ncaps: {edge: E}\n"
_ROW = "rules:\n  - {task: detection, family: X, models: [s, l], caps: {edge: s}}\n"
_ACCS = ("accelerators:\n  none: {sizing: cpu}\n  nvidia-gpu: {sizing: memory}\n  other: {sizing: memory}\n"
         "  edge-tpu: {sizing: edge, reason: tiny SRAM}\n  rknn-npu: {sizing: edge, reason: slow NPU}\n"
         "  adreno-gpu: {sizing: memory}\n  mali-gpu: {sizing: memory}\n")


@pytest.mark.parametrize("text, field", [
    (_TABLE_HEAD + _ROW.replace("caps: {edge: s}", "caps: {edge: xl}") + _ACCS, "rules[0].caps.edge"),
    (_TABLE_HEAD + _ROW.replace("caps: {edge: s}", "caps: {}") + _ACCS, "rules[0].caps.edge"),
    (_TABLE_HEAD + _ROW.replace("caps: {edge: s}", "caps: {edge: s, phone: s}") + _ACCS, "rules[0].caps.phone"),
    (_TABLE_HEAD + _ROW, "accelerators"),
    (_TABLE_HEAD + _ROW + _ACCS.replace("  mali-gpu: {sizing: memory}\n", ""), "accelerators.mali-gpu"),
    (_TABLE_HEAD + _ROW + _ACCS + "  abacus: {sizing: cpu}\n", "accelerators.abacus"),
    (_TABLE_HEAD + _ROW + _ACCS.replace("{sizing: edge, reason: tiny SRAM}", "{sizing: edge}"),
     "accelerators.edge-tpu.reason"),
    (_TABLE_HEAD + _ROW + _ACCS.replace("{sizing: edge, reason: slow NPU}", "{sizing: small}"),
     "accelerators.rknn-npu.sizing"),
])
def test_malformed_accelerator_rules_name_the_field(tmp_path, text, field):
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_rules(path)
    assert err.value.field == field


def test_a_well_formed_small_table_loads_and_caps(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(_TABLE_HEAD + _ROW + _ACCS)
    table = load_rules(path)
    assert recommend("detection", 3, memory_gb=64, accelerator="edge-tpu", table=table).model == "s"
    assert recommend("detection", 3, memory_gb=64, accelerator="mali-gpu", table=table).model == "l"
