"""Launch configs: the fixed fallback fits every supported format; tuned candidates are legal."""

from tigerdecode.kernels.configs import candidates, fixed_config, m_bucket, tuned_config, valid


def test_fixed_config_is_valid_for_every_format():
    for bits, group in ((4, 32), (4, 64), (4, 128), (8, None)):
        for path in ("gemv", "gemm"):
            for K in (64, 576, 1536, 4096):
                cfg = fixed_config(path, bits, group, 1, 4096, K)
                assert valid(cfg, bits, group, K), (bits, group, path, K, cfg)


def test_candidates_respect_tl_dot_minimum_and_m():
    for M in (5, 16, 64, 200):
        gemm = candidates("gemm", M)
        assert gemm and all(c.block_m >= 16 and c.block_n >= 16 and c.block_k >= 16 for c in gemm)
        assert all(c.block_m <= max(16, m_bucket(M)) for c in gemm)
    assert all(c.split_k >= 1 for c in candidates("gemv"))
    assert [m_bucket(m) for m in (1, 2, 3, 17, 64)] == [1, 2, 4, 32, 64]


def test_tuning_falls_back_to_the_fixed_config_without_a_gpu():
    def run(_cfg):  # would launch the kernel; never called without a GPU
        raise AssertionError("tuning must not run here")

    cfg = tuned_config("gemv", 4, 128, 1, 256, 512, None, run)
    assert cfg == fixed_config("gemv", 4, 128, 1, 256, 512)
