"""Backbones (timm) with their identity, and the loading of pretrained checkpoints."""
from .backbones import (BACKBONES, CXR_MEAN, CXR_STD, IMAGENET_MEAN, IMAGENET_STD, BackboneConfig,
                        BackboneSpec, CLASSIFIER_FAMILIES, FAMILIES, check_backbone, create_backbone, family_of, head_names,
                        resolve_backbone, spec_for, timm_model_args)
from .checkpoint import LoadReport, load_pretrained, read_state_dict

__all__ = ["BACKBONES", "CXR_MEAN", "CXR_STD", "IMAGENET_MEAN", "IMAGENET_STD", "BackboneConfig",
           "BackboneSpec", "CLASSIFIER_FAMILIES", "FAMILIES", "check_backbone", "create_backbone", "family_of", "head_names",
           "resolve_backbone", "spec_for", "timm_model_args", "LoadReport", "load_pretrained", "read_state_dict"]
