"""The kernel benchmark produces a complete, self-consistent table (no timing asserted)."""

from tigerdecode.kernels.bench import bench, format_table


def test_cpu_bench_rows_and_table():
    rows, peak = bench(device="cpu", shapes=[("tiny 64x128", 64, 128)], ms=(1, 3), reps=2)
    assert peak > 0
    assert {(r["M"], r["format"]) for r in rows} == {(1, "int4 g128"), (1, "int8"),
                                                     (3, "int4 g128"), (3, "int8")}
    for r in rows:
        assert r["baseline"] == "fp32" and r["ours_us"] > 0
        assert abs(r["speedup"] - r["baseline_us"] / r["ours_us"]) < 1e-6 * r["speedup"]
    table = format_table(rows, peak, "cpu: test")
    assert table.count("\n| tiny 64x128 |") == 4 and "% of peak" in table
