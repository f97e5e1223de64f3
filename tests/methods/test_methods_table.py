"""`medpeft methods`: every method that fits the backbone, with the counts docs/methods.md quotes."""
from __future__ import annotations

import io

import pytest
from rich.console import Console

from medpeft.studies.listings import methods_table
from medpeft.methods import METHODS


def rows(table) -> dict[str, dict[str, str]]:
    """method name -> {column header: cell text}."""
    return {record["method"]: record for record in table.to_records()}


@pytest.fixture(scope="module")
def vit_base():
    return methods_table("vit_base", img_size=224, patch_size=16, num_outputs=14)


@pytest.fixture(scope="module")
def resnet50():
    return methods_table("resnet50", img_size=224, num_outputs=14)


@pytest.mark.parametrize("fixture,family", [("vit_base", "vit"), ("resnet50", "resnet")])
def test_lists_exactly_the_methods_that_fit_and_names_the_others(fixture, family, request):
    table = request.getfixturevalue(fixture)
    fitting = [name for name, cls in METHODS.items() if family in cls.families]
    misfits = [name for name, cls in METHODS.items() if family not in cls.families]
    assert list(rows(table)) == fitting
    assert misfits and table.caption == f"not applicable to {family} backbones: {', '.join(misfits)}"
    out = io.StringIO()
    Console(file=out, width=250).print(table.to_rich())  # renders without error, caption included
    assert "not applicable" in out.getvalue()


@pytest.mark.parametrize("method,without_head", [
    ("lora", 294_912),  # 2 (q, v) x 2 (A, B) x 768 x 8 x 12
    ("vpt-deep", 92_160),  # 10 x 768 x 12
    ("vpt-shallow", 7_680),  # 10 x 768
    ("bitfit", 102_144),
    ("ln", 36_864),  # 12 x 2 x 2 x 768
    ("adaptformer", 1_189_632),  # 12 x (768 x 64 + 64 + 64 x 768 + 768)
    ("linear", 0),
])
def test_vit_base_counts_without_the_head(vit_base, method, without_head):
    row = rows(vit_base)[method]
    head = 768 * 14 + 14 + 2 * 768  # classifier + fc_norm
    assert row["without head"] == f"{without_head:,}"
    assert row["trainable"] == f"{without_head + head:,}"


def test_resnet50_counts_without_the_head(resnet50):
    table = rows(resnet50)
    assert table["bitfit"]["without head"] == "53,120"  # 2 x 26,560 BatchNorm channels
    assert table["linear"]["trainable"] == f"{2048 * 14 + 14:,}"
