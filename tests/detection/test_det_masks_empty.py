import torch

from tango_core.detection._nms import process_masks


def test_no_detections_give_no_masks():
    masks = process_masks(torch.randn(32, 16, 16), torch.zeros(0, 32), torch.zeros(0, 4), (64, 64))
    assert masks.shape == (0, 64, 64) and masks.dtype == torch.bool


def test_masks_are_cut_to_their_box():
    protos = torch.full((2, 8, 8), 10.0)  # every prototype pixel strongly "on"
    masks = process_masks(protos, torch.ones(1, 2), torch.tensor([[8.0, 8.0, 24.0, 16.0]]), (32, 32))
    assert masks.shape == (1, 32, 32)
    assert masks[0, 8:16, 8:24].all() and masks[0].sum() == 16 * 8
