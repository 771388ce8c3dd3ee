"""lmforge.kernels.hugepages: weights moved into huge-page memory keep their values, parameters and uses."""
import gc

import pytest
import torch

from lmforge.models import build_model, load_model, save_model
from lmforge.kernels import huge_page_weights, set_huge_pages
from lmforge.kernels.hugepages import HUGE_PAGE, available
from lmforge.kernels.tune import forced

needs_thp = pytest.mark.skipif(not available(), reason="no transparent huge pages here (not Linux, or THP 'never')")


@pytest.fixture(autouse=True)
def huge_pages_pay():
    """Moving is timed (hugepages.pays); these tests are about moving, so huge pages are taken as if faster."""
    with forced("huge_pages"):
        yield


def model():
    torch.manual_seed(0)  # 4096 x 128 embedding alone is 2 MiB: more than one huge page in all
    return build_model("gpt", dict(vocab_size=4096, max_len=64, d_model=128, n_heads=4, n_layers=2, dropout=0.0)).eval()


def advised_mappings() -> list[tuple[int, int]]:
    """(start, end) of this process's mappings the kernel marks "hg" (madvise MADV_HUGEPAGE), from /proc/self/smaps."""
    out, current = [], None
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                current = tuple(int(x, 16) for x in head.split("-"))
            elif head == "VmFlags:" and "hg" in line.split()[1:]:
                out.append(current)
    return out


@needs_thp
def test_moves_every_weight_into_one_advised_mapping_and_changes_nothing_else():
    m = model()
    ids = torch.randint(0, 4096, (2, 16))
    before_logits = m(ids).logits
    params = dict(m.named_parameters())
    old_ptrs = {k: p.data_ptr() for k, p in params.items()}
    moved = huge_page_weights(m)
    assert moved == sum(p.numel() * p.element_size() for p in params.values())
    assert dict(m.named_parameters()) == params  # the same Parameter objects (optimizers, hooks keep working)
    assert all(p.data_ptr() != old_ptrs[k] for k, p in params.items())
    assert torch.equal(m(ids).logits, before_logits)
    ptrs = sorted(p.data_ptr() for p in params.values())
    assert ptrs[0] % HUGE_PAGE == 0  # the first tensor starts on a huge page
    assert any(start <= ptrs[0] and ptrs[-1] < end for start, end in advised_mappings())
    assert huge_page_weights(m) == 0  # once per model


@needs_thp
def test_a_moved_model_trains_saves_and_loads(tmp_path):
    m = model().train()
    huge_page_weights(m)
    w = m.blocks[0].attn.qkv.weight
    ptr, before = w.data_ptr(), w.detach().clone()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    ids = torch.randint(0, 4096, (2, 16))
    m(ids, targets=ids).loss.backward()
    opt.step()
    assert w.data_ptr() == ptr and not torch.equal(w, before)  # updated in place, in the huge-page memory
    save_model(m, tmp_path)  # safetensors refuses tensors that share memory: each part has its own storage
    again = load_model(tmp_path)
    for (k, a), b in zip(m.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


@needs_thp
def test_memory_is_returned_with_the_model():
    m = model()
    huge_page_weights(m)
    ptr = m.tok_emb.weight.data_ptr()
    assert any(s <= ptr < e for s, e in advised_mappings())
    del m
    gc.collect()
    assert not any(s <= ptr < e for s, e in advised_mappings())


@needs_thp
def test_switched_off_views_shared_or_tied_storage_nothing_moves():
    m = model()
    set_huge_pages(False)
    try:
        assert huge_page_weights(m) == 0
    finally:
        set_huge_pages(True)
    big = torch.zeros(4 * HUGE_PAGE // 4)
    view = torch.nn.Linear(1024, 1024, bias=False)
    view.weight = torch.nn.Parameter(big[:1024 * 1024].view(1024, 1024))  # part of a bigger tensor: shared
    assert huge_page_weights(view) == 0 and view.weight.data_ptr() == big.data_ptr()
    shared = model().share_memory()  # torch.multiprocessing: moving would silently unshare it
    assert huge_page_weights(shared) == 0 and shared.tok_emb.weight.is_shared()
    a, b = torch.nn.Linear(1024, 1024), torch.nn.Linear(1024, 1024)
    b.weight = torch.nn.Parameter(a.weight.data)  # two Parameters, one storage: moving would untie them
    pair = torch.nn.ModuleList([a, b])
    huge_page_weights(pair)
    assert a.weight.data_ptr() == b.weight.data_ptr()


@needs_thp
def test_decoding_moves_a_cpu_model_only_when_asked():
    from lmforge.generate import generate
    m = model()
    ptr = m.tok_emb.weight.data_ptr()
    greedy = [s.token for s in generate(m, [1, 2, 3], max_new_tokens=4, temperature=0)]
    assert m.tok_emb.weight.data_ptr() == ptr  # the caller's model stays where it is by default
    assert [s.token for s in generate(m, [1, 2, 3], max_new_tokens=4, temperature=0, huge_pages=True)] == greedy
    assert m.tok_emb.weight.data_ptr() != ptr
    assert [s.token for s in generate(m, [1, 2, 3], max_new_tokens=4, temperature=0)] == greedy


@needs_thp
def test_the_cli_moves_the_models_it_loads_for_decoding(tmp_path):
    from lmforge.cli.generate import load_run
    from lmforge.tokenizers import CharTokenizer, save_tokenizer
    save_model(model(), tmp_path)
    save_tokenizer(CharTokenizer.train("abc"), tmp_path)
    m, _ = load_run(str(tmp_path))
    assert any(s <= m.tok_emb.weight.data_ptr() < e for s, e in advised_mappings())

