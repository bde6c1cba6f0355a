"""The What if? tab's pure helpers (no Streamlit run): reading the occlusion grid's selection events."""

from __future__ import annotations

from app.tabs.whatif import cells_from_selection


def test_cells_from_a_click_a_box_and_streamlits_dict_rows():
    click = {"selection": {"points": [{"x": 8.0, "y": 24.0, "customdata": [1, 0]}], "box": [], "lasso": []}}
    assert cells_from_selection(click) == ([(1, 0)], False)
    box = {"selection": {"points": [{"customdata": [0, 0]}, {"customdata": {"0": 0, "1": 1}}],
                         "box": [{"x": [0, 30], "y": [0, 10]}]}}
    assert cells_from_selection(box) == ([(0, 0), (0, 1)], True)
    one_in_box = {"selection": {"points": [{"customdata": [2, 3]}], "box": [{"x": [0, 1], "y": [0, 1]}]}}
    assert cells_from_selection(one_in_box) == ([(2, 3)], True)
    for empty in (None, {}, {"selection": None}, {"selection": {"points": [{"customdata": None}]}},
                  {"selection": {"points": [{"customdata": ["a", 1]}]}}):
        assert cells_from_selection(empty)[0] == []
