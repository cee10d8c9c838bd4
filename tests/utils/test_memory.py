"""Measured memory (densepose_ext.utils.memory) against hand counts on toy networks."""
import pytest
import torch

from densepose_ext.utils.memory import measure_memory, storage_bytes

F32 = 4  # bytes
N, D, H, K = 64, 256, 1024, 16  # batch, input, hidden and output widths of the MLP
#: the tolerance of a peak against its hand count (allocator-level scalars, ordering)
PEAK_RTOL = 0.01


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(D, H), torch.nn.ReLU(), torch.nn.Linear(H, K))


def test_storage_bytes_counts_each_storage_once():
    t = torch.zeros(100)
    assert storage_bytes([t, t[:10], t.view(10, 10), torch.zeros(3, dtype=torch.float64)]) == \
        100 * F32 + 3 * 8


def test_saved_activations_of_an_mlp_match_the_hand_count_exactly():
    net, x = _mlp(), torch.randn(N, D)
    params = list(net.parameters())
    with measure_memory(alive=[*params, x], exclude=params) as m:
        net(x).sum().backward()
    # first Linear keeps its input (for its weight gradient); the ReLU output is kept by the
    # ReLU and by the second Linear: one storage, counted once
    assert m.saved_bytes == (N * D + N * H) * F32
    assert m.saved_storages == 2
    assert m.alive_bytes == (D * H + H + H * K + K + N * D) * F32


def test_saved_activations_of_a_conv_net_match_the_hand_count_exactly():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 4, 3, padding=1))
    x = torch.randn(2, 3, 16, 16)
    params = list(net.parameters())
    with measure_memory(alive=[*params, x], exclude=params) as m:
        net(x).sum().backward()
    assert m.saved_bytes == (2 * 3 * 16 * 16 + 2 * 8 * 16 * 16) * F32


def test_training_peak_of_an_mlp_matches_the_hand_count():
    net, x = _mlp(), torch.randn(N, D)
    params = list(net.parameters())
    with measure_memory(alive=[*params, x], exclude=params) as m:
        net(x).sum().backward()
    # the peak comes in the first Linear's backward: the gradient of its output, its weight
    # and bias gradients, the second Linear's gradients (kept), the loss and its seed gradient
    hand = (N * H + H * D + H + K * H + K) * F32 + 2 * F32
    assert m.peak_increase_bytes == pytest.approx(hand, rel=PEAK_RTOL)
    assert m.peak_bytes == pytest.approx(m.alive_bytes + hand, rel=PEAK_RTOL)
    # what stays is the gradients of the parameters
    assert m.end_increase_bytes == sum(p.numel() for p in params) * F32


def test_inference_peak_of_an_mlp_matches_the_hand_count():
    net, x = _mlp(), torch.randn(N, D)
    with torch.no_grad(), measure_memory(alive=[*net.parameters(), x]) as m:
        out = net(x)
    # while the ReLU runs, the first Linear's output and the ReLU's output are both alive
    assert m.peak_increase_bytes == pytest.approx(2 * N * H * F32, rel=PEAK_RTOL)
    assert m.end_increase_bytes == out.numel() * F32  # only the output stays
    assert m.saved_bytes == 0 and m.saved_storages == 0


def test_peak_follows_the_batch_size():
    net = _mlp()
    peaks = []
    for n in (32, 128):
        with torch.no_grad(), measure_memory() as m:
            net(torch.randn(n, D))
        peaks.append(m.peak_increase_bytes)
    assert peaks[1] == pytest.approx(4 * peaks[0], rel=PEAK_RTOL)
