"""medpeft: parameter-efficient fine-tuning of vision foundation models for medical images."""
__version__ = "0.1.0"
