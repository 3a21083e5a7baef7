"""The shared did-you-mean helper."""

from __future__ import annotations

from nnseg._suggest import close_matches, format_names, unknown_name_hint


def test_close_matches_ignores_case_and_keeps_spelling() -> None:
    assert close_matches("3D_FULRES", ["2d", "3d_fullres", "3d_lowres"]) == ["3d_fullres"]
    assert close_matches("xyz", ["2d", "3d_fullres"]) == []
    assert close_matches("3d_lowre", ["3d_lowres", "3d_fullres"], max_matches=2)[0] == "3d_lowres"


def test_unknown_name_hint() -> None:
    names = ["3d_lowres", "2d", "3d_fullres"]
    assert (
        unknown_name_hint("3d_fulres", names)
        == "Did you mean '3d_fullres'? Available: '2d', '3d_fullres', '3d_lowres'."
    )
    assert unknown_name_hint("zzz", names) == "Available: '2d', '3d_fullres', '3d_lowres'."
    assert unknown_name_hint("zzz", []) == "Available: (none)."
    assert format_names(iter(["b", "a"])) == "'a', 'b'"
