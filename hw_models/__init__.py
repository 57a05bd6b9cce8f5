"""Hardware models: one YAML file per device, loaded into frozen, validated dataclasses.

`load_hw(name_or_path)` is the registry entry point; `list_hw()` names the presets;
`with_overrides` gives re-validated variants for design-space exploration. `schema` holds
the dataclasses, `build` turns YAML into them field by field, `loader` validates the rules
that span fields.

Imports: sparseflow.ir.errors only (the layers above read hardware models).
"""

from sparseflow.hw_models.loader import (
    hw_from_dict,
    hw_to_dict,
    list_hw,
    load_hw,
    with_overrides,
)
from sparseflow.hw_models.schema import CpuModel, FpgaModel, GpuModel, HardwareModel, Kind

__all__ = [
    "CpuModel",
    "FpgaModel",
    "GpuModel",
    "HardwareModel",
    "Kind",
    "hw_from_dict",
    "hw_to_dict",
    "list_hw",
    "load_hw",
    "with_overrides",
]
