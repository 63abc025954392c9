"""summary.md and heatmaps of `rolevec sweep`."""

from __future__ import annotations

from test_sweep_select import BASE_IN, BASE_OFF, base, flip, rec, records

from rolevec_lmeval.sweep_report import heatmap, summary_markdown
from rolevec_lmeval.sweep_select import analyse, select

META = {"model_slug": "m", "model": "m", "dtype": "float32", "limit": 10, "off_sample": 2, "seed": 0}


def frame():
    steer = [rec(layer=layer, alpha=a, position=p, in_bits=flip(BASE_IN, layer + int(a)))
             for layer in (4, 8) for a in (1.0, 4.0) for p in (-1, -2)]
    nurse = rec(role="nurse", off_bits=flip(BASE_OFF, 6, "0"))  # hurts off-domain: nothing selectable
    test = [rec(layer=8, alpha=4.0, split="test"), base("mmlu_a", BASE_IN, "test"),
            base("mmlu_b", BASE_OFF, "test")]
    return analyse(records(*steer, nurse, rec(kind="persona", iv=""), *test))


def test_summary_table():
    df = frame()
    picks = select(df)
    text = summary_markdown(df, picks, META, 1.0, {"chemist": "heatmaps/chemist.png"})
    chem = next(line for line in text.splitlines() if line.startswith("| chemist | add l8 p-1 α=4"))
    assert "+30.0 [" in chem and "Holm" in chem and "| 40 / 40 |" in chem
    assert "| nurse | none within tolerance |" in text
    assert "## Test split (reported only; never used for selection)" in text
    assert "over all" in text.lower() and "![chemist](heatmaps/chemist.png)" in text


def test_heatmap_png(tmp_path):
    df = frame()
    path = heatmap(df, "chemist", select(df)["chemist"], tmp_path / "h" / "chemist.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert heatmap(df, "nobody", None, tmp_path / "x.png") is None
