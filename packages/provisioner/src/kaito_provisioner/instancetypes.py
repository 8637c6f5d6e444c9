"""A catalog of Azure VM sizes (the GPU ones Kaito uses, plus a few CPU ones) for the kwok provider.

The azure provider does not use it: it asks ARM's resource SKU API for the real numbers.
"""

from __future__ import annotations

from pydantic import BaseModel

GPU_RESOURCE = "nvidia.com/gpu"


class InstanceType(BaseModel):
    name: str
    cpu: int
    memory_gib: int
    gpus: int = 0
    gpu_model: str = ""
    pods: int = 110

    def capacity(self) -> dict[str, str]:
        out = {
            "cpu": str(self.cpu),
            "memory": f"{self.memory_gib}Gi",
            "pods": str(self.pods),
            "ephemeral-storage": "128Gi",
        }
        if self.gpus:
            out[GPU_RESOURCE] = str(self.gpus)
        return out


_TABLE = [
    # name, vCPU, memory GiB, GPUs, GPU
    ("Standard_NC6s_v2", 6, 112, 1, "P100"),
    ("Standard_NC12s_v2", 12, 224, 2, "P100"),
    ("Standard_NC24s_v2", 24, 448, 4, "P100"),
    ("Standard_NC24rs_v2", 24, 448, 4, "P100"),
    ("Standard_ND6s", 6, 112, 1, "P40"),
    ("Standard_ND12s", 12, 224, 2, "P40"),
    ("Standard_ND24s", 24, 448, 4, "P40"),
    ("Standard_ND24rs", 24, 448, 4, "P40"),
    ("Standard_NV12s_v3", 12, 112, 1, "M60"),
    ("Standard_NV24s_v3", 24, 224, 2, "M60"),
    ("Standard_NV48s_v3", 48, 448, 4, "M60"),
    ("Standard_NC8ads_A10_v4", 8, 110, 1, "A10"),
    ("Standard_NC16ads_A10_v4", 16, 220, 1, "A10"),
    ("Standard_NC32ads_A10_v4", 32, 440, 1, "A10"),
    ("Standard_NV6ads_A10_v5", 6, 55, 1, "A10"),
    ("Standard_NV12ads_A10_v5", 12, 110, 1, "A10"),
    ("Standard_NV18ads_A10_v5", 18, 220, 1, "A10"),
    ("Standard_NV36adms_A10_v5", 36, 880, 1, "A10"),
    ("Standard_NCC40ads_H100_v5", 40, 320, 1, "H100"),
    ("Standard_ND96asr_A100_v4", 96, 900, 8, "A100"),
    ("Standard_NC6s_v3", 6, 112, 1, "V100"),
    ("Standard_NC12s_v3", 12, 224, 2, "V100"),
    ("Standard_NC24s_v3", 24, 448, 4, "V100"),
    ("Standard_NC24rs_v3", 24, 448, 4, "V100"),
    ("Standard_NC4as_T4_v3", 4, 28, 1, "T4"),
    ("Standard_NC8as_T4_v3", 8, 56, 1, "T4"),
    ("Standard_NC16as_T4_v3", 16, 110, 1, "T4"),
    ("Standard_NC64as_T4_v3", 64, 440, 4, "T4"),
    ("Standard_NV36ads_A10_v5", 36, 440, 1, "A10"),
    ("Standard_NV72ads_A10_v5", 72, 880, 2, "A10"),
    ("Standard_NC24ads_A100_v4", 24, 220, 1, "A100"),
    ("Standard_NC48ads_A100_v4", 48, 440, 2, "A100"),
    ("Standard_NC96ads_A100_v4", 96, 880, 4, "A100"),
    ("Standard_ND96asr_v4", 96, 900, 8, "A100"),
    ("Standard_ND96amsr_A100_v4", 96, 1900, 8, "A100"),
    ("Standard_NC40ads_H100_v5", 40, 320, 1, "H100"),
    ("Standard_NC80adis_H100_v5", 80, 640, 2, "H100"),
    ("Standard_ND96isr_H100_v5", 96, 1900, 8, "H100"),
    ("Standard_ND96isr_H200_v5", 96, 1850, 8, "H200"),
    ("Standard_D2s_v3", 2, 8, 0, ""),
    ("Standard_D4s_v3", 4, 16, 0, ""),
    ("Standard_D8s_v3", 8, 32, 0, ""),
    ("Standard_DS2_v2", 2, 7, 0, ""),
]
CATALOG: dict[str, InstanceType] = {
    name.lower(): InstanceType(name=name, cpu=cpu, memory_gib=mem, gpus=gpus, gpu_model=model)
    for name, cpu, mem, gpus, model in _TABLE
}


def lookup(name: str) -> InstanceType | None:
    """Case-insensitive, like Azure VM size names."""
    return CATALOG.get(name.lower())
