"""Mixed precision: which CPUs get bf16 autocast by default, and a bf16 training that learns."""

from __future__ import annotations

import pytest
import torch
from engine_data import quadrant_data

from tango_core import events as ev
from tango_core.engine import train
from tango_core.engine._device import amp_dtype, cpu_has_bf16
from tango_core.errors import ConfigError
from tango_core.events import EventBus, Recorder

SKYLAKE = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 avx512f avx512bw avx512vl avx512_vnni\n"
SAPPHIRE_RAPIDS = SKYLAKE.replace("avx512_vnni", "avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8")
NEOVERSE_V1 = "processor\t: 0\nFeatures\t: fp asimd aes sha2 crc32 atomics fphp asimdhp sve bf16 i8mm\n"


@pytest.mark.unit
def test_bf16_by_default_only_where_the_cpu_has_it_natively():
    # AVX-512 alone emulates bf16 (slower than fp32): oneDNN's own check would say yes there
    assert not cpu_has_bf16(SKYLAKE)
    assert cpu_has_bf16(SAPPHIRE_RAPIDS) and cpu_has_bf16(NEOVERSE_V1)
    assert not cpu_has_bf16("") and not cpu_has_bf16("flags: fpu sse")
    cpu = torch.device("cpu")
    assert amp_dtype(cpu, "off") is None and amp_dtype(cpu, False) is None
    assert amp_dtype(cpu, "bf16") is torch.bfloat16  # asked for explicitly: always
    assert amp_dtype(cpu, "auto") is (torch.bfloat16 if cpu_has_bf16() else None)
    with pytest.raises(ConfigError, match="fp16 training is not supported on CPU"):
        amp_dtype(cpu, "fp16")
    with pytest.raises(ConfigError, match="amp"):
        amp_dtype(cpu, "fp8")


@pytest.mark.slow
def test_bf16_autocast_training_learns(tmp_path):
    bus = EventBus()
    rec = Recorder(bus)
    result = train(quadrant_data(n_train=128, n_val=32), "resnet-cifar20", epochs=4, imgsz=16, batch_size=16,
                   amp="bf16", loggers=(), hyp={"fliplr": 0.0}, run_dir=tmp_path / "bf16", events=bus, seed=0)
    assert rec.of(ev.SYSTEM_INFO)[0]["amp"] == "bfloat16"
    losses = [e["loss"] for e in rec.of(ev.TRAIN_BATCH)]
    assert all(map(torch.isfinite, torch.tensor(losses)))
    assert sum(losses[-8:]) / 8 < sum(losses[:8]) / 8
    assert result.metrics["top1"] >= 0.9  # four bright quadrants: bf16 must not stop it learning
