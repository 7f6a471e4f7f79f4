"""Scan orders against the 4 x 4 vectors of docs/scan.md, and inverse(order) == identity on many grids."""

import pytest
import torch

from usm.scan_orders import PATHS, USM_SCHEMES, ZIGMA_PATHS, inverse_order, path_name, scan_order

# Printed by the reference code for a 4 x 4 grid (docs/scan.md).
REFERENCE_4X4 = {
    0: [0, 1, 2, 3, 7, 6, 5, 4, 8, 9, 10, 11, 15, 14, 13, 12],
    1: [12, 13, 14, 15, 11, 10, 9, 8, 4, 5, 6, 7, 3, 2, 1, 0],
    2: [3, 2, 1, 0, 4, 5, 6, 7, 11, 10, 9, 8, 12, 13, 14, 15],
    3: [15, 14, 13, 12, 8, 9, 10, 11, 7, 6, 5, 4, 0, 1, 2, 3],
    4: [0, 4, 8, 12, 13, 9, 5, 1, 2, 6, 10, 14, 15, 11, 7, 3],
    5: [3, 7, 11, 15, 14, 10, 6, 2, 1, 5, 9, 13, 12, 8, 4, 0],
    6: [12, 8, 4, 0, 1, 5, 9, 13, 14, 10, 6, 2, 3, 7, 11, 15],
    7: [15, 11, 7, 3, 2, 6, 10, 14, 13, 9, 5, 1, 0, 4, 8, 12],
}


@pytest.mark.parametrize("scheme", range(8))
def test_usm_schemes_match_reference_vectors(scheme):
    assert scan_order(scheme, 4, 4).tolist() == REFERENCE_4X4[scheme]
    assert scan_order(scheme + 8, 4, 4).tolist() == REFERENCE_4X4[scheme]  # block number % 8


def test_zigma_paths_are_the_usm_set_in_zigma_order_on_even_grids():
    as_usm_ids = [next(i for i, v in REFERENCE_4X4.items() if v == scan_order(name, 4, 4).tolist())
                  for name in ZIGMA_PATHS]
    assert as_usm_ids == [0, 4, 2, 5, 1, 6, 3, 7]


@pytest.mark.parametrize("height, width", [(1, 1), (1, 5), (5, 1), (2, 3), (3, 2), (3, 3), (5, 7), (8, 8), (6, 4)])
@pytest.mark.parametrize("name", sorted(PATHS))
def test_order_is_a_permutation_and_inverse_restores(name, height, width):
    order = scan_order(name, height, width)
    assert sorted(order.tolist()) == list(range(height * width))
    tokens = torch.randn(2, height * width, 3)
    scanned = tokens[:, order]
    torch.testing.assert_close(scanned[:, inverse_order(name, height, width)], tokens)


@pytest.mark.parametrize("name", sorted(PATHS))
def test_paths_move_between_grid_neighbours(name):
    """A snake never jumps: consecutive tokens are 4-neighbours, on square and non-square grids."""
    for height, width in [(4, 4), (3, 5), (5, 2)]:
        order = scan_order(name, height, width)
        rows, cols = order // width, order % width
        steps = (rows.diff().abs() + cols.diff().abs()).tolist()
        assert steps == [1] * (height * width - 1)


@pytest.mark.parametrize("height, width", [(3, 5), (4, 4), (5, 2)])
@pytest.mark.parametrize("name", sorted(PATHS))
def test_paths_start_at_their_corner(name, height, width):
    """On odd grids reversal and mirroring differ, so ZigMa's corner-defined paths are not USM ids."""
    snake = PATHS[name]
    order = scan_order(name, height, width)
    end = order[-1] if snake.reverse else order[0]
    row = 0 if snake.corner[0] == "T" else height - 1
    col = 0 if snake.corner[1] == "L" else width - 1
    assert end.item() == row * width + col
    if snake.major == "row" and width > 1:  # the first move is along the row
        assert (order[-2] if snake.reverse else order[1]).item() == row * width + (1 if col == 0 else col - 1)


def test_zigma_bottom_left_differs_from_reversed_usm_scheme_on_odd_grids():
    assert scan_order("row-snake-BL", 3, 5)[0].item() == 10
    assert scan_order(1, 3, 5)[0].item() == 14


def test_returned_orders_are_copies():
    scan_order(0, 4, 4)[0] = 99
    assert scan_order(0, 4, 4)[0] == 0


def test_bad_path_and_grid_raise():
    with pytest.raises(ValueError, match="unknown scan path 'diagonal'"):
        scan_order("diagonal", 4, 4)
    with pytest.raises(ValueError, match="at least 1 x 1"):
        scan_order(0, 0, 4)
    assert path_name(9) == USM_SCHEMES[1]


def test_orders_built_under_meta_device_stay_on_cpu():
    with torch.device("meta"):
        scan_order("col-snake-BR", 3, 7)
    assert scan_order("col-snake-BR", 3, 7).device.type == "cpu"


@pytest.mark.parametrize("dim", [0, 1, 2])
def test_permute_matches_indexing_forward_and_backward(dim):
    from usm.scan_orders import permute

    order, inverse = scan_order(5, 3, 4), inverse_order(5, 3, 4)
    shape = [2, 3, 5]
    shape[dim] = 12
    x = torch.randn(*shape, requires_grad=True)
    weights = torch.randn(*shape)
    (permute(x, order, inverse, dim) * weights).sum().backward()
    expected = x.detach().clone().requires_grad_()
    (expected.index_select(dim, order) * weights).sum().backward()
    torch.testing.assert_close(permute(x, order, inverse, dim), expected.index_select(dim, order))
    torch.testing.assert_close(x.grad, expected.grad)
