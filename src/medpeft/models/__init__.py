"""Backbones (timm) and the loading of pretrained checkpoints."""
from .backbones import BACKBONES, BackboneConfig, create_backbone, family_of, head_names
from .checkpoint import LoadReport, load_pretrained, read_state_dict

__all__ = ["BACKBONES", "BackboneConfig", "create_backbone", "family_of", "head_names",
           "LoadReport", "load_pretrained", "read_state_dict"]
